// How a model reads an image to understand it (DESIGN.md, "The understanding side"): the switches
// that separate today's multimodal LLMs, beside the recipe's own generation switches.
//
//   encoder    what turns pixels into features: `shared` reads the generation codes or latents, as the
//              three recipes do; `patches` cuts the pixels into p×p patches and uses their raw values
//              (Fuyu, Bavishi et al. 2023: no image encoder at all); `vit` reads them through a small
//              ViT trained contrastively on image–caption pairs (SigLIP, Zhai et al. 2023), frozen unless
//              `train_encoder` (LLaVA, Flamingo and NVLM freeze theirs; `VisionTransformer.swift`).
//   connector  features → the LM's width: `linear` (LLaVA 1.0, Liu et al. 2023), `mlp` (LLaVA 1.5,
//              Liu et al. 2024, §3.1), `resampler` (Flamingo's Perceiver Resampler, Alayrac et al. 2022,
//              §2.1), `qformer` (BLIP-2, Li et al. 2023, §3.1), `pixel_shuffle` (InternVL 1.5, Chen et
//              al. 2024, §3.1: 2×2 neighbouring patches merged into one, then the MLP).
//   fusion     where the image enters the LM: `sequence` (its tokens are positions of the sequence:
//              LLaVA, Fuyu, NVLM-D), `cross_attention` (tanh-gated cross-attention layers every k blocks,
//              the image never in the sequence: Flamingo §2.2, NVLM-X), `hybrid` (a half-resolution
//              thumbnail in the sequence, the full image through cross-attention: NVLM-H, Dai et al.
//              2024, §4.3).
//
// With `shared` the image is read as the recipe generates it and the other switches do not apply.
// Any other encoder reads pixels in image→caption documents only; generation documents keep the
// recipe's codes or latents, so every recipe still generates (Janus's decoupling, Wu et al. 2024).

public struct UnderstandingConfig: Codable, Equatable, Sendable {
    public enum Encoder: String, ConfigurationChoice, Sendable { case shared, patches, vit }
    public enum Connector: String, ConfigurationChoice, Sendable {
        case linear, mlp, resampler, qformer
        case pixelShuffle = "pixel_shuffle"
    }
    public enum Fusion: String, ConfigurationChoice, Sendable {
        case sequence, hybrid
        case crossAttention = "cross_attention"
    }

    public var encoder = Encoder.shared
    public var connector = Connector.mlp
    public var fusion = Fusion.sequence
    /// Side p of the pixel patches the `patches` encoder cuts (the image side must be a multiple); with
    /// `vit`, the ViT's own (set from its weights).
    public var patchSize = 4
    /// Whether the `vit` encoder's weights train with the model (false: frozen, as loaded).
    public var trainEncoder = false
    /// Learned queries of the resampler and the Q-Former: the tokens each image becomes.
    public var queries = 16
    /// Layers of the resampler and the Q-Former.
    public var connectorLayers = 2
    /// A gated cross-attention layer before every k-th block of the core (Flamingo uses 1 to 7 by
    /// size, Llama 3.2 every 4th): before blocks 0, k, 2k, ….
    public var crossAttentionEvery = 2

    // Image geometry, given by the autoencoder (as RecipeConfig.imageGrid).
    /// Side S of the square input images, in pixels.
    public var imageSide = 32
    /// Channels of the input images (1 grey, 3 RGB).
    public var imageChannels = 1

    public init() {}

    enum CodingKeys: String, CodingKey {
        case encoder, connector, fusion, queries
        case patchSize = "patch_size", trainEncoder = "train_encoder", connectorLayers = "connector_layers", crossAttentionEvery = "cross_attention_every"
        case imageSide = "image_side", imageChannels = "image_channels"
    }

    /// Whether image→caption documents carry pixels for this encoder, rather than the generation codes or latents.
    public var readsPixels: Bool { encoder != .shared }
    /// Whether the core gets gated cross-attention layers.
    public var crossAttends: Bool { readsPixels && fusion != .sequence }

    /// Patches per side of an image of side `side`.
    func patchGrid(side: Int) -> Int { side / patchSize }

    /// Tokens the connector makes of an image of side `side`.
    func connectorTokens(side: Int) -> Int {
        let n = patchGrid(side: side)
        switch connector {
        case .linear, .mlp: return n * n
        case .pixelShuffle: return (n / 2) * (n / 2)
        case .resampler, .qformer: return queries
        }
    }

    /// Positions an image takes in the LM's sequence: all its tokens (`sequence`), none
    /// (`cross_attention`), or those of its half-resolution thumbnail (`hybrid`).
    public var sequencePositions: Int {
        switch fusion {
        case .sequence: return connectorTokens(side: imageSide)
        case .crossAttention: return 0
        case .hybrid: return connectorTokens(side: imageSide / 2)
        }
    }

    public func validate(layers: Int) throws {
        guard readsPixels else {
            guard fusion == .sequence else {
                throw ConfigurationError("recipe.understanding.fusion: \(fusion.rawValue) needs an understanding encoder apart from the generation tokenizer; set recipe.understanding.encoder: patches or vit (the shared encoder puts the codes or latents in the sequence)")
            }
            return
        }
        func fail(_ m: String) -> ConfigurationError { ConfigurationError("recipe.understanding." + m) }
        guard imageSide > 0, imageChannels > 0 else { throw fail("image_side and image_channels must be positive (got \(imageSide), \(imageChannels))") }
        guard patchSize > 0, imageSide % patchSize == 0 else {
            throw fail("patch_size: \(patchSize) does not divide the image side \(imageSide); pick a divisor")
        }
        let sides = fusion == .hybrid ? [imageSide, imageSide / 2] : [imageSide]
        for side in sides {
            guard side % patchSize == 0 else {
                throw fail("patch_size: \(patchSize) does not divide the hybrid thumbnail's side \(side) (half the image); pick a divisor of \(side)")
            }
            if connector == .pixelShuffle {
                guard patchGrid(side: side) % 2 == 0 else {
                    throw fail("connector: pixel_shuffle merges 2×2 patches, but a \(side)-pixel image has \(patchGrid(side: side)) patches per side; use an even count (patch_size \(patchSize) → a smaller one)")
                }
            }
        }
        if connector == .resampler || connector == .qformer {
            guard queries > 0 else { throw fail("queries must be positive (got \(queries))") }
            guard connectorLayers > 0 else { throw fail("connector_layers must be positive (got \(connectorLayers))") }
        }
        if crossAttends {
            guard (1...layers).contains(crossAttentionEvery) else {
                throw fail("cross_attention_every must lie in 1...\(layers) (the core's layers), got \(crossAttentionEvery)")
            }
        }
    }
}

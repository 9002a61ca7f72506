// The understanding side of a model whose encoder is not the generation tokenizer (`UnderstandingConfig`):
// pixels → encoder features → connector tokens, for the LM's sequence and for its cross-attention layers.
//
// The `patches` encoder (Fuyu, Bavishi et al. 2023) has no weights: an image [C, S, S] is cut into an
// n×n grid of p×p patches (n = S/p), each the vector of its p·p·C pixel values mapped to [−1, 1].
// The `vit` encoder (`VisionTransformer`, trained contrastively apart from the model) turns the same
// patches into one feature per patch.
// With `hybrid` fusion the sequence gets the tokens of a half-resolution thumbnail (2×2 average pooling,
// the same encoder and connector) and the cross-attention layers the full image's (NVLM-H, Dai et al.
// 2024, §4.3: a global thumbnail in the decoder's sequence, the tiles through cross-attention).
// Features for cross-attention get a fixed 2-D position embedding when the connector keeps the patch
// grid (the keys have no RoPE position; the resampler and Q-Former add theirs inside).
//
// Shape alphabet: I images, C channels, S side, p patch side, n = S/p, E = p·p·C, M tokens, D width.

public final class ImageUnderstanding: Module {
    public let config: UnderstandingConfig
    /// The ViT of `encoder: vit` (its weights are parameters only when `train_encoder`).
    public let encoder: VisionTransformer?
    public let connector: any Connector
    let width: Int

    /// `encoder`: the trained ViT (`vit`); nil for `patches`.
    init(config: UnderstandingConfig, encoder: VisionTransformer?, width d: Int, heads: Int, generator: inout RandomGenerator) {
        precondition((config.encoder == .vit) == (encoder != nil), "ImageUnderstanding: a ViT is given exactly for encoder vit")
        self.config = config
        self.encoder = encoder
        width = d
        let e = encoder?.config.width ?? config.patchSize * config.patchSize * config.imageChannels
        let grid = config.patchGrid(side: config.imageSide)
        switch config.connector {
        case .linear, .mlp, .pixelShuffle:
            connector = ProjectionConnector(config.connector, features: e, width: d, generator: &generator)
        case .resampler:
            connector = PerceiverResampler(features: e, width: d, heads: heads, queries: config.queries,
                                           layers: config.connectorLayers, fullGrid: grid, generator: &generator)
        case .qformer:
            connector = QFormer(features: e, width: d, heads: heads, queries: config.queries,
                                layers: config.connectorLayers, fullGrid: grid, generator: &generator)
        }
    }

    /// The encoder's features [I, n·n, E] of pixels [I, C, S, S]: the raw patches (`patches`) or the
    /// ViT's (`vit`, without a graph when it is frozen).
    public func features(_ pixels: Tensor) -> Tensor {
        guard let encoder else { return pixelPatches(pixels, size: config.patchSize) }
        return encoder(pixels)
    }

    /// Connector tokens [I, M, D] of pixels [I, C, S, S] (any side the patch size divides).
    func tokens(_ pixels: Tensor) -> Tensor { connector(features(pixels), grid: pixels.shape[2] / config.patchSize) }

    /// The tokens that take the image's positions in the sequence [I, M, D] (`sequencePositions` each):
    /// the image's (`sequence`) or its thumbnail's (`hybrid`); nil for `cross_attention`.
    public func sequenceTokens(_ pixels: Tensor) -> Tensor? {
        switch config.fusion {
        case .sequence: return tokens(pixels)
        case .hybrid: return tokens(avgPool2x(pixels))
        case .crossAttention: return nil
        }
    }

    /// The features the cross-attention layers read [I, M, D]; nil for `sequence` fusion.
    public func crossAttentionFeatures(_ pixels: Tensor) -> Tensor? {
        guard config.crossAttends else { return nil }
        let features = tokens(pixels)
        guard connector.keepsGrid else { return features }
        let grid = config.patchGrid(side: pixels.shape[2]) / (config.connector == .pixelShuffle ? 2 : 1)
        return features + gridPositionEmbedding(grid: grid, full: grid, width: width)
    }
}

/// Raw patches [I, n·n, p·p·C] of pixels [I, C, S, S] in [0, 1] (row-major grid; within a patch,
/// channel, then row, then column), mapped to [−1, 1]: Fuyu's input, and the ViT's before its projection.
public func pixelPatches(_ pixels: Tensor, size p: Int) -> Tensor {
    let (i, c, s) = (pixels.shape[0], pixels.shape[1], pixels.shape[2])
    checkShape(pixels.rank == 4 && pixels.shape[3] == s && s % p == 0,
               "pixelPatches: pixels \(pixels.shape) must be [I, C, S, S] with S a multiple of \(p)")
    let n = s / p
    return pixels.reshaped([i, c, n, p, n, p]).permuted([0, 2, 4, 1, 3, 5]).reshaped([i, n * n, p * p * c])
        .affine(scale: 2, shift: -1)
}

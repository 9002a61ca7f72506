// The `vit` understanding encoder: a small Vision Transformer (Dosovitskiy et al. 2021, §3.1) built from
// the core's own blocks, trained apart from any recipe, contrastively on image–caption pairs in the
// SigLIP manner (`SigmoidContrastive.swift`, `fusion encoder train`), and committed like the
// autoencoders (results/encoders/vit/). LLaVA, Flamingo, NVLM and Janus all read images through such a
// separately pretrained encoder, most often frozen.
//
// An image [C, S, S] is cut into an n×n grid of p×p patches (n = S/p, the same patches as Fuyu's
// `patches` encoder), each projected to the width D. The blocks are the core's (`TransformerBlock`:
// RMSNorm, QK-norm, SwiGLU), with attention bidirectional over the image and 2-D rotary positions by row
// and column (M-RoPE, `RotaryAngles`) in place of ViT's learned position table, so the same weights
// read a half-resolution thumbnail (NVLM-H's) at its own grid. Output: one feature per patch, final-norm'd.
//
// Shape alphabet: I images, C channels, S side, p patch side, n = S/p, E = p·p·C, D width.
import Foundation

public struct VisionEncoderConfig: Codable, Equatable, Sendable {
    // The encoder.
    public var imageSide = 32
    public var imageChannels = 1
    public var patchSize = 4
    public var width = 64
    public var layers = 4
    public var heads = 4

    // Its contrastive training (SigLIP, Zhai et al. 2023).
    /// Width of the shared image–text embedding space.
    public var embeddingWidth = 64
    /// Blocks of the caption encoder (the text tower, discarded after training).
    public var textLayers = 1
    public var steps = 600
    /// Image–caption pairs per step: every pair of the batch is a negative unless the captions are equal.
    public var batchSize = 256
    public var learningRate: Float = 1e-3
    public var warmupSteps = 50
    public var weightDecay: Float = 1e-4
    public var gradientClip: Float = 1
    public var seed: UInt64 = 0
    public var logEvery = 25

    public init() {}

    public var grid: Int { imageSide / patchSize }
    /// Features per patch the encoder reads: p·p·C.
    public var patchFeatures: Int { patchSize * patchSize * imageChannels }

    /// The blocks' configuration (no vocabulary: the encoder reads patches, not ids).
    var blockConfig: TransformerConfig {
        var c = TransformerConfig()
        c.width = width; c.layers = layers; c.heads = heads
        c.vocabularySize = 1; c.contextLength = grid * grid
        c.qkNorm = true; c.normPlacement = .pre; c.imageRope = .twoD
        return c
    }

    /// Every problem with the values, each naming the option to change; empty when usable.
    public var problems: [String] {
        var found: [String] = []
        if imageSide < 1 || imageChannels < 1 || patchSize < 1 || imageSide % patchSize != 0 {
            found.append("the patch size \(patchSize) must divide the image side \(imageSide)")
        }
        do { try blockConfig.validate() } catch { found.append("width \(width), layers \(layers), heads \(heads): \(error)") }
        if embeddingWidth < 1 || textLayers < 1 { found.append("embeddingWidth and textLayers must be ≥ 1") }
        if steps < 1 || batchSize < 2 || warmupSteps < 0 || logEvery < 1 {
            found.append("need steps ≥ 1, batchSize ≥ 2 (a batch holds the negatives), warmupSteps ≥ 0, logEvery ≥ 1")
        }
        if !(learningRate > 0) || !(gradientClip > 0) || !(weightDecay >= 0) {
            found.append("need learningRate > 0, gradientClip > 0 and weightDecay ≥ 0")
        }
        return found
    }

    /// The configuration as JSON text with sorted keys (stored in logs and weight files).
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}

public final class VisionTransformer: Module {
    public let config: VisionEncoderConfig
    let patchWeight: Tensor  // [D, E]
    let patchBias: Tensor  // [D]
    let blocks: [TransformerBlock]
    let finalNorm: Tensor  // [D]
    /// Every weight above, listed while all are parameters: `setTrainable` reaches them when frozen,
    /// where the parameter walk no longer does. (Walked again, they are listed once, under the names above.)
    private var weights: [Tensor] = []

    public init(config: VisionEncoderConfig, generator: inout RandomGenerator) {
        precondition(config.problems.isEmpty, "VisionTransformer: \(config.problems.joined(separator: "; "))")
        self.config = config
        let d = config.width, e = config.patchFeatures
        patchWeight = Tensor.randomNormal([d, e], std: 1 / Float(e).squareRoot(), generator: &generator, requiresGrad: true)
        patchBias = Tensor(zeros: [d], requiresGrad: true)
        let blockConfig = config.blockConfig
        blocks = (0..<config.layers).map { _ in TransformerBlock(config: blockConfig, generator: &generator) }
        finalNorm = Tensor(repeating: 1, shape: [d], requiresGrad: true)
        weights = namedParameters().map(\.tensor)
    }

    /// Features [I, n·n, D] of pixels [I, C, S, S] in [0, 1] (any side the patch size divides); the
    /// grid is row-major, as the connectors expect.
    public func callAsFunction(_ pixels: Tensor) -> Tensor {
        let patches = pixelPatches(pixels, size: config.patchSize)
        let (images, tokens) = (patches.shape[0], patches.shape[1])
        let n = pixels.shape[2] / config.patchSize
        var x = linear(patches, patchWeight) + patchBias
        var axes = PositionAxes(positions: [Int32](repeating: 0, count: images * tokens))
        for image in 0..<images { axes.markImage(first: image * tokens, count: tokens, side: n, start: 0) }
        let blocks = config.blockConfig
        let angles = RotaryAngles(temporal: axes.temporal, height: axes.height, width: axes.width,
                                  base: blocks.ropeBase, headWidth: blocks.headWidth)
        // One bidirectional span per image.
        let mask = AttentionMask(documentIDs: [Int32](repeating: 0, count: tokens), spanIDs: [Int32](repeating: 0, count: tokens))
        let masks = [AttentionMask](repeating: mask, count: images)
        for block in self.blocks { x = block(x, angles: angles, masks: masks) }
        return rmsNorm(x, weight: finalNorm)
    }

    /// Stops (or restarts) training the encoder: its tensors become buffers, which no optimiser sees,
    /// no checkpoint of the model holds and no backward pass reaches.
    public func setTrainable(_ trainable: Bool) {
        for tensor in weights { tensor.requiresGrad = trainable }
    }

    /// The image tower of weights written by `fusion encoder train` (`SigmoidContrastiveModel.save`);
    /// `trainable` false loads it frozen.
    public static func load(from path: String, trainable: Bool) throws -> VisionTransformer {
        let (checkpoint, config) = try SigmoidContrastiveModel.readWeights(path)
        var generator = RandomGenerator(seed: config.seed)
        let encoder = VisionTransformer(config: config, generator: &generator)
        var tower: [String: Tensor] = [:]
        for (name, tensor) in checkpoint.tensors where name.hasPrefix("image.") { tower[String(name.dropFirst("image.".count))] = tensor }
        try Checkpoint(step: checkpoint.step, tensors: tower).restore(into: encoder.parametersByName())
        encoder.setTrainable(trainable)
        return encoder
    }
}

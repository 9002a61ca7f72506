// Contrastive image–text pretraining with the pairwise sigmoid loss (SigLIP, Zhai et al. 2023, §3.1): the
// objective the `vit` understanding encoder is trained with before any multimodal model reads through it,
// as LLaVA, NVLM and Janus read through a CLIP or SigLIP encoder (Radford et al. 2021).
//
// Two towers map an image and a caption to unit vectors in one P-wide space:
//   image → VisionTransformer features → mean over patches → linear → ‖·‖ = 1
//   caption words → embeddings → the core's blocks (bidirectional, 1-D RoPE) → mean over words → linear → ‖·‖ = 1
// The logit of image i against caption j is t·⟨xᵢ, yⱼ⟩ + b with t = e^t′ and b learned (initialised at
// t′ = log 10, b = −10, the paper's §3.1), and every pair of the batch is scored by `sigmoidPairLoss`. The
// captions are generated from a few templates, so two images of a batch often share one: such a pair is
// a positive too (the softmax loss of CLIP could not say so; the sigmoid loss can).
//
// Shape alphabet: I images (= captions per batch), L words, D tower width, P embedding width.
import Foundation

/// The text tower: word embeddings and the core's blocks, mean-pooled over the caption's words.
public final class CaptionEncoder: Module {
    let wordEmbedding: Tensor  // [W, D]
    let blocks: [TransformerBlock]
    let finalNorm: Tensor  // [D]
    let config: TransformerConfig

    init(words: Int, width d: Int, layers: Int, heads: Int, generator: inout RandomGenerator) {
        var c = TransformerConfig()
        c.width = d; c.layers = layers; c.heads = heads; c.vocabularySize = words; c.qkNorm = true; c.normPlacement = .pre
        config = c
        wordEmbedding = Tensor.randomNormal([words, d], std: 1, generator: &generator, requiresGrad: true)
        blocks = (0..<layers).map { _ in TransformerBlock(config: c, generator: &generator) }
        finalNorm = Tensor(repeating: 1, shape: [d], requiresGrad: true)
    }

    /// Pooled states [I, D] of I captions given as word ids (any lengths ≥ 1, padded here).
    func callAsFunction(_ captions: [[Int32]]) -> Tensor {
        let (count, length, d) = (captions.count, captions.map(\.count).max() ?? 1, config.width)
        var ids: [Int32] = [], positions: [Int32] = [], masks: [AttentionMask] = []
        let weights = Tensor(zeros: [count, length, 1])
        for (row, words) in captions.enumerated() {
            precondition(!words.isEmpty, "CaptionEncoder: caption \(row) has no words")
            let pad = length - words.count
            ids += words + [Int32](repeating: 0, count: pad)
            positions += (0..<Int32(length)).map { $0 }
            let inside = [Int32](repeating: 0, count: words.count) + [Int32](repeating: -1, count: pad)
            masks.append(AttentionMask(documentIDs: inside, spanIDs: inside))  // one bidirectional span; padding apart
            for j in 0..<words.count { weights.data[row * length + j] = 1 / Float(words.count) }
        }
        var x = embedding(wordEmbedding, ids: ids).reshaped([count, length, d])
        let angles = RotaryAngles(positions: positions, base: config.ropeBase, headWidth: config.headWidth)
        for block in blocks { x = block(x, angles: angles, masks: masks) }
        return (rmsNorm(x, weight: finalNorm) * weights).sum(axis: 1)
    }
}

public final class SigmoidContrastiveModel: Module {
    public let image: VisionTransformer
    let imageProjection: Tensor  // [P, D]
    public let text: CaptionEncoder
    let textProjection: Tensor  // [P, D]
    /// t′ and b: the logit of a pair is e^t′·⟨x, y⟩ + b.
    let logTemperature: Tensor, bias: Tensor  // [1], [1]

    public init(config: VisionEncoderConfig, words: Int, generator: inout RandomGenerator) {
        image = VisionTransformer(config: config, generator: &generator)
        let d = config.width, p = config.embeddingWidth
        imageProjection = Tensor.randomNormal([p, d], std: 1 / Float(d).squareRoot(), generator: &generator, requiresGrad: true)
        text = CaptionEncoder(words: words, width: d, layers: config.textLayers, heads: config.heads, generator: &generator)
        textProjection = Tensor.randomNormal([p, d], std: 1 / Float(d).squareRoot(), generator: &generator, requiresGrad: true)
        logTemperature = Tensor([Foundation.log(10)], shape: [1], requiresGrad: true)
        bias = Tensor([-10], shape: [1], requiresGrad: true)
    }

    /// Unit image embeddings [I, P] of pixels [I, C, S, S].
    public func imageEmbeddings(_ pixels: Tensor) -> Tensor {
        unitRows(linear(image(pixels).mean(axis: 1), imageProjection))
    }

    /// Unit caption embeddings [I, P] of captions as word ids.
    public func textEmbeddings(_ captions: [[Int32]]) -> Tensor { unitRows(linear(text(captions), textProjection)) }

    /// Logits [I, I] of every image against every caption.
    public func logits(images: Tensor, texts: Tensor) -> Tensor {
        matmul(images, texts, transposeB: true) * logTemperature.exp() + bias
    }

    /// The batch's loss; `positive[i·I + j]`: caption j describes image i (its own, or one with the same text).
    public func loss(_ pixels: Tensor, captions: [[Int32]], positive: [Bool]) -> Tensor {
        sigmoidPairLoss(logits(images: imageEmbeddings(pixels), texts: textEmbeddings(captions)), positive: positive)
    }

    /// The learned t = e^t′ and b.
    public var temperature: Float { Foundation.exp(logTemperature.data[0]) }
    public var logitBias: Float { bias.data[0] }
}

extension SigmoidContrastiveModel {
    static let modelName = "siglip"

    /// Writes both towers' weights, the configuration and the text tower's word list (one per line) as
    /// an HDF5 checkpoint without optimiser state.
    public func save(to path: String, words: [String], overwrite: Bool, metadata extra: [String: String] = [:]) throws {
        var metadata = extra
        metadata["model"] = Self.modelName
        metadata["config"] = image.config.json
        metadata["words"] = words.joined(separator: "\n")
        try Checkpoint(step: image.config.steps, tensors: parametersByName(), metadata: metadata).write(to: path, overwrite: overwrite)
    }

    /// Reads weights written by `save`: the model and its word list.
    public static func load(from path: String) throws -> (model: SigmoidContrastiveModel, words: [String]) {
        let (checkpoint, config) = try readWeights(path)
        let words = (checkpoint.metadata["words"] ?? "").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var generator = RandomGenerator(seed: config.seed)
        let model = SigmoidContrastiveModel(config: config, words: words.count, generator: &generator)
        try checkpoint.restore(into: model.parametersByName())
        return (model, words)
    }

    /// The checkpoint at `path` and its encoder configuration, or an error that says what to do.
    static func readWeights(_ path: String) throws -> (Checkpoint, VisionEncoderConfig) {
        func fail(_ message: String) -> VisionEncoderWeightsError { VisionEncoderWeightsError(description: message) }
        guard FileManager.default.fileExists(atPath: path) else {
            throw fail("vision encoder weights '\(path)' do not exist; train them with `fusion encoder train --out DIR` "
                       + "or point autoencoder.vision at results/encoders/vit/weights.h5")
        }
        let checkpoint = try Checkpoint.read(from: path)
        guard checkpoint.metadata["model"] == modelName, let json = checkpoint.metadata["config"] else {
            throw fail("'\(path)' is not vision encoder weights (its metadata has model = \(checkpoint.metadata["model"].map { "\"\($0)\"" } ?? "none"), "
                       + "expected \"\(modelName)\"); pass a weights.h5 written by `fusion encoder train`")
        }
        let config: VisionEncoderConfig
        do { config = try JSONDecoder().decode(VisionEncoderConfig.self, from: Data(json.utf8)) } catch {
            throw fail("'\(path)': its stored configuration cannot be read (\(error)); the file is damaged or from an incompatible version: retrain it")
        }
        guard config.problems.isEmpty else { throw fail("'\(path)': its stored configuration is invalid: \(config.problems.joined(separator: "; "))") }
        return (checkpoint, config)
    }
}

/// Vision encoder weights that cannot be used; the message says what to do.
public struct VisionEncoderWeightsError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public var errorDescription: String? { description }
}

/// Rows of x [N, P] scaled to unit length.
func unitRows(_ x: Tensor) -> Tensor { x / (x.squared().sum(axis: 1, keepingDimension: true) + 1e-12).sqrt() }

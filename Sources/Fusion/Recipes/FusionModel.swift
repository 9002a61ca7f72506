// The model a recipe trains: the core transformer, the shared vocabulary, and (Transfusion only) the
// modules that turn latent patches into core inputs and back. Which objective, attention pattern and
// sampler apply is read from `config`; there is one model class, not one per recipe.
//
// Shape alphabet: B batch, T sequence, D width, V vocabulary, N = B·T.

public final class FusionModel: Module {
    /// The resolved configuration (`model.vocabularySize` equals `vocabulary.size`).
    public let config: RecipeConfig
    public let vocabulary: Vocabulary
    public let core: Transformer
    /// Latent patches ↔ core width, with the timestep embedding (Transfusion §3.2); nil for codes.
    public let latentPatches: LatentPatchCodec?
    /// The understanding encoder and connector, when image→caption documents carry pixels
    /// (`config.understanding`); nil when the model reads images as it generates them.
    public let understanding: ImageUnderstanding?

    /// `visionEncoder`: the trained ViT that `recipe.understanding.encoder: vit` reads through (loaded
    /// with `VisionTransformer.load`, trainable as `train_encoder` says); the model keeps it.
    public init(config: RecipeConfig, vocabulary: Vocabulary, visionEncoder: VisionTransformer? = nil,
                generator: inout RandomGenerator) throws {
        var resolved = config
        if config.understanding.encoder == .vit {
            guard let vit = visionEncoder else {
                throw ConfigurationError("recipe.understanding.encoder: vit needs the trained ViT's weights (autoencoder.vision, "
                                         + "made by `fusion encoder train`)")
            }
            let u = config.understanding
            guard vit.config.imageSide == u.imageSide && vit.config.imageChannels == u.imageChannels else {
                throw ConfigurationError("recipe.understanding.encoder: vit reads \(vit.config.imageChannels)×\(vit.config.imageSide)² images, "
                                         + "but the data's are \(u.imageChannels)×\(u.imageSide)²; train a ViT on these images (`fusion encoder train --images …`)")
            }
            resolved.understanding.patchSize = vit.config.patchSize
            vit.setTrainable(u.trainEncoder)
        }
        resolved.model.vocabularySize = vocabulary.size
        if config.imageObjective.usesCodes {
            resolved.imageCodes = vocabulary.imageCodes
            guard vocabulary.imageCodes > 0 else {
                throw ConfigurationError("recipe '\(config.recipe)' uses image codes (\(config.imageObjective.rawValue)) but the vocabulary has none; build it with the VQ/LFQ autoencoder's codebook size")
            }
        } else if vocabulary.imageCodes != 0 {
            throw ConfigurationError("recipe '\(config.recipe)' uses continuous latents (diffusion) but the vocabulary has \(vocabulary.imageCodes) image codes; build it with imageCodes: 0")
        }
        try resolved.validate()
        self.config = resolved
        self.vocabulary = vocabulary
        var coreGenerator = generator.split(key: "core"), patchGenerator = generator.split(key: "latentPatches")
        var understandingGenerator = generator.split(key: "understanding")
        let reading = resolved.understanding
        core = Transformer(config: resolved.model, crossAttentionEvery: reading.crossAttends ? reading.crossAttentionEvery : 0,
                           generator: &coreGenerator)
        latentPatches = resolved.imageObjective == .diffusion
            ? LatentPatchCodec(config: resolved, generator: &patchGenerator) : nil
        understanding = reading.readsPixels
            ? ImageUnderstanding(config: reading, encoder: reading.encoder == .vit ? visionEncoder : nil,
                                 width: resolved.model.width, heads: resolved.model.heads, generator: &understandingGenerator)
            : nil
    }

    public var layout: SequenceLayout {
        SequenceLayout(vocabulary: vocabulary, patchSize: config.patchSize,
                       pixelPositions: understanding.map { $0.config.sequencePositions })
    }

    /// The attention masks of a packed batch under this recipe's image attention.
    public func masks(for batch: PackedBatch) -> [AttentionMask] { batch.masks(imageAttention: config.imageAttention) }

    /// The training loss of a packed batch under this recipe's objective; `generator` draws the
    /// recipe's randomness (mask ratios, timesteps, noise). With `rows`, the share of those rows (one
    /// rank's of a data-parallel step): the forward pass reads them alone, the randomness and every
    /// normaliser are the whole batch's, so the shares of all ranks sum to the whole batch's loss, its
    /// parts and its gradient.
    public func loss(_ batch: PackedBatch, rows: Range<Int>? = nil, generator: inout RandomGenerator) -> RecipeLoss {
        let rows = rows ?? 0..<batch.rows
        switch config.imageObjective {
        case .nextToken: return nextTokenLoss(batch, rows: rows)
        case .maskedTokens: return maskedTokenLoss(batch, rows: rows, generator: &generator)
        case .diffusion: return diffusionLoss(batch, rows: rows, generator: &generator)
        }
    }
}

/// A training loss and its parts, for logging.
public struct RecipeLoss {
    /// The scalar to differentiate.
    public let total: Tensor
    /// Named parts (e.g. "text_loss", "image_loss"), each the mean over its own positions of the batch
    /// (not weighted as they enter `total`); for a share of the rows, that share's contribution to the
    /// mean, so that the ranks' parts sum to the whole batch's.
    public let parts: [(name: String, value: Float)]
    /// Positions whose prediction is trained (text targets plus image positions).
    public let trainedPositions: Int

    public init(total: Tensor, parts: [(name: String, value: Float)], trainedPositions: Int) {
        self.total = total
        self.parts = parts
        self.trainedPositions = trainedPositions
    }

    public func part(_ name: String) -> Float? { parts.first { $0.name == name }?.value }

    /// The whole batch's loss from the ranks' shares of it: the total, each part and the trained
    /// positions summed over the ranks. Values only: the graph to differentiate stays the share's.
    public func summed(over communicator: Communicator) -> RecipeLoss {
        let sums = communicator.sum([Double(total.item)] + parts.map { Double($0.value) } + [Double(trainedPositions)])
        return RecipeLoss(total: Tensor(scalar: Float(sums[0])), parts: zip(parts, sums.dropFirst()).map { ($0.name, Float($1)) },
                          trainedPositions: Int(sums[sums.count - 1]))
    }
}

/// One share's targets of a loss that is a mean over the whole batch's `total` targets: the mean over
/// the share's own `count` targets, times `weight` = count ÷ total, is its contribution to the mean
/// (weight 1 for the whole batch, so that a single process computes exactly the plain mean).
struct LossShare {
    var targets: [Int32] = []
    let count: Int, total: Int

    init(targets: [Int32], of total: Int) {
        self.targets = targets
        count = targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        self.total = total
    }

    init(count: Int, of total: Int) {
        self.count = count
        self.total = total
    }

    var weight: Float { count == total ? 1 : Float(count) / Float(total) }

    /// A logged part, the mean over the share's targets, as its contribution to the whole batch's mean.
    func part(_ mean: Float) -> Float { count == total ? mean : mean * weight }
}

extension Tensor {
    /// `self · weight`, and `self` itself for a weight of 1 (no extra operation in the graph or the FLOP count).
    func scaled(by weight: Float) -> Tensor { weight == 1 ? self : self * weight }
}

// MARK: Inputs and prompts

extension FusionModel {
    /// Input embeddings [B, T, D] of a packed batch: the token embedding of every id and, for latent
    /// images, the patch embedding of each image's latents at its timestep instead (Transfusion §3.2).
    /// `latents` (one [C, h, w] per image) default to the batch's clean latents, `timesteps` (in training
    /// steps, 0...diffusionSteps; fractional for the flow objective) to 0. The diffusion loss and the
    /// sampler use `latentInputs`, which also returns what the patch decoder needs (the U-Net's skips).
    public func inputEmbeddings(_ batch: PackedBatch, latents: [Tensor]? = nil, timesteps: [Float]? = nil) -> Tensor {
        latentInputs(batch, latents: latents, timesteps: timesteps).inputs
    }

    /// Prompts packed one per row and aligned to the right (left padding, invisible to attention), so
    /// that every row's next position is the same column: what batched sampling continues from.
    /// Prompts are open documents (no EOS).
    public func packPrompts(_ prompts: [Document]) throws -> PackedBatch {
        let singles = try prompts.map { try layout.pack([$0], length: layout.length(of: $0, closed: false), closed: false) }
        let length = singles.map(\.length).max() ?? 0
        guard length <= config.model.contextLength else {
            throw SequenceLengthError(documentLength: length, contextLength: config.model.contextLength)
        }
        var ids: [Int32] = [], positions: [Int32] = [], documentIDs: [Int32] = [], imageIndex: [Int32] = []
        var images: [PackedImage] = []
        for (row, single) in singles.enumerated() {
            let padding = length - single.length
            ids += Array(repeating: vocabulary.pad, count: padding) + single.ids
            positions += Array(repeating: 0, count: padding) + single.positions
            documentIDs += Array(repeating: -1, count: padding) + single.documentIDs
            imageIndex += Array(repeating: -1, count: padding) + single.imageIndex.map { $0 < 0 ? -1 : $0 + Int32(images.count) }
            images += single.images.map {
                PackedImage(row: row, start: $0.start + padding, count: $0.count, document: row, comesFirst: $0.comesFirst, content: $0.content)
            }
        }
        return PackedBatch(rows: prompts.count, length: length, ids: ids, positions: positions,
                           documentIDs: documentIDs, imageIndex: imageIndex, images: images)
    }

    /// Runs packed prompts (from `packPrompts`) into `cache` and returns the final hidden states
    /// [B, T, D]; row b's last one predicts what follows its prompt. Image positions attend to each
    /// other when this recipe's image attention is bidirectional. Inference only.
    public func prefill(_ prompts: PackedBatch, cache: KVCache) -> Tensor {
        prefill(prompts, cache: cache, context: withoutGradients { crossAttentionContext(prompts) })
    }

    /// `prefill` with the prompts' cross-attention context already made (`crossAttentionContext`).
    func prefill(_ prompts: PackedBatch, cache: KVCache, context: CrossAttentionContext?) -> Tensor {
        withoutGradients {
            let valid = (0..<prompts.rows).map { row in
                (0..<prompts.length).map { prompts.documentIDs[row * prompts.length + $0] >= 0 }
            }
            let attention: KVCache.NewTokenAttention = config.imageAttention == .bidirectional ? .spans(prompts.imageIndex) : .causal
            return core.hiddenStates(inputEmbeddings(prompts), positions: prompts.positions, cache: cache,
                                     newTokens: attention, valid: valid, context: context,
                                     axes: positionAxes(prompts))
        }
    }
}

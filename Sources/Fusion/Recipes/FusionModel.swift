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

    public init(config: RecipeConfig, vocabulary: Vocabulary, generator: inout RandomGenerator) throws {
        var resolved = config
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
        core = Transformer(config: resolved.model, generator: &coreGenerator)
        latentPatches = resolved.imageObjective == .diffusion
            ? LatentPatchCodec(config: resolved, generator: &patchGenerator) : nil
    }

    public var layout: SequenceLayout { SequenceLayout(vocabulary: vocabulary, patchSize: config.patchSize) }

    /// The attention masks of a packed batch under this recipe's image attention.
    public func masks(for batch: PackedBatch) -> [AttentionMask] { batch.masks(imageAttention: config.imageAttention) }

    /// The training loss of a packed batch under this recipe's objective; `generator` draws the
    /// recipe's randomness (mask ratios, timesteps, noise).
    public func loss(_ batch: PackedBatch, generator: inout RandomGenerator) -> RecipeLoss {
        switch config.imageObjective {
        case .nextToken: return nextTokenLoss(batch)
        case .maskedTokens: return maskedTokenLoss(batch, generator: &generator)
        case .diffusion: return diffusionLoss(batch, generator: &generator)
        }
    }
}

/// A training loss and its parts, for logging.
public struct RecipeLoss {
    /// The scalar to differentiate.
    public let total: Tensor
    /// Named parts (e.g. "text_loss", "image_loss"), already weighted as they enter `total`? No: raw
    /// values, each the mean over its own positions.
    public let parts: [(name: String, value: Float)]
    /// Positions whose prediction is trained (text targets plus image positions).
    public let trainedPositions: Int

    public init(total: Tensor, parts: [(name: String, value: Float)], trainedPositions: Int) {
        self.total = total
        self.parts = parts
        self.trainedPositions = trainedPositions
    }

    public func part(_ name: String) -> Float? { parts.first { $0.name == name }?.value }
}

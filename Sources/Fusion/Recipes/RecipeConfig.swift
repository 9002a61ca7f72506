// One configuration type for all three recipes (DESIGN.md, the recipe table): every difference
// between Chameleon, Show-o and Transfusion is a field here, so "Chameleon with bidirectional image
// attention" or "Transfusion with QK-norm" is a one-line change. The named recipes are presets.

public struct RecipeConfig: Codable, Equatable, Sendable {
    /// How images are represented and what loss they get.
    public enum ImageObjective: String, ConfigurationChoice, Sendable {
        /// Chameleon (arXiv 2405.09818, §2.1): VQ codes in the vocabulary, next-token cross-entropy.
        case nextToken = "next_token"
        /// Show-o (arXiv 2408.12528, §3.2): codes, a scheduled share replaced by MASK, cross-entropy on those.
        case maskedTokens = "masked_tokens"
        /// Transfusion (arXiv 2408.11039, §3.1): continuous latents, noise prediction, MSE.
        case diffusion

        public var usesCodes: Bool { self != .diffusion }
    }

    /// Share of image tokens masked as a function of u ~ U(0, 1) (Show-o §3.2, after MaskGIT §3.2).
    public enum MaskSchedule: String, ConfigurationChoice, Sendable { case cosine, linear, power, sigmoid }
    /// Transfusion §3.2: a linear layer, or U-Net down/up blocks, between latent patches and the core.
    public enum PatchEncoder: String, ConfigurationChoice, Sendable { case linear, unet }
    /// ε-prediction under a cosine schedule (Transfusion §2.2, DDPM), or rectified flow (Liu et al.
    /// 2022; Esser et al. 2024): predict the velocity x₁ − x₀ along a straight path.
    public enum DiffusionObjective: String, ConfigurationChoice, Sendable { case epsilon, flow }

    /// The recipe this configuration started from (for logs); switches may since have changed.
    public var recipe = "chameleon"
    public var model = TransformerConfig()
    public var imageObjective = ImageObjective.nextToken
    public var imageAttention = ImageAttention.causal
    /// Coefficient of the z-loss (log Z)² on text/code logits (Chameleon §2.3 uses 1e-5).
    public var zLoss: Float = 0
    /// Probability a caption is dropped in training, for classifier-free guidance (Ho & Salimans 2022).
    public var captionDropout: Float = 0.1

    // Image geometry, given by the autoencoder.
    /// Side h = w of the autoencoder's latent grid.
    public var imageGrid = 8
    /// Codebook size K of the discrete autoencoder.
    public var imageCodes = 512
    /// Latent channels C of the continuous autoencoder.
    public var latentChannels = 4

    // Show-o.
    public var maskSchedule = MaskSchedule.cosine
    /// Exponent of the `.power` schedule, steepness of `.sigmoid`.
    public var maskScheduleShape: Float = 2

    // Transfusion.
    public var patchSize = 2
    public var patchEncoder = PatchEncoder.linear
    /// λ in  loss = LM + λ · diffusion  (Transfusion §3.3 uses 5).
    public var diffusionWeight: Float = 5
    public var diffusionObjective = DiffusionObjective.epsilon
    /// Training timesteps of the discrete noise schedule.
    public var diffusionSteps = 1_000
    /// When an image precedes its caption, its noise level is capped at this timestep so captioning
    /// still sees a usable image (Transfusion §4.3, "Image Noising", caps at t = 500).
    public var captioningNoiseLimit = 500

    // Task tokens and the masked-token weighting (appended by the discrete recipes).
    /// Show-o §3.1: a task token opens every image–text document: T2I before a caption→image
    /// document, MMU before an image→caption one (see `generationDocument`, `understandingDocument`).
    public var taskTokens = false
    /// Weight of the masked-token (image) terms against the text terms in Show-o's loss:
    /// total = (Σ text CE + w · Σ masked-code CE) / (text targets + masked codes); 1 gives the plain
    /// mean over every trained position, as Chameleon's loss is (see `MaskedTokenObjective.swift`).
    public var maskedTokenWeight: Float = 1

    /// How the model reads an image to understand it (encoder, connector, fusion): `UnderstandingConfig`.
    public var understanding = UnderstandingConfig()

    public init() {}

    /// YAML keys in snake_case (`recipe.image_attention=bidirectional`).
    enum CodingKeys: String, CodingKey {
        case recipe, model
        case imageObjective = "image_objective", imageAttention = "image_attention", zLoss = "z_loss"
        case captionDropout = "caption_dropout", imageGrid = "image_grid", imageCodes = "image_codes"
        case latentChannels = "latent_channels", maskSchedule = "mask_schedule", maskScheduleShape = "mask_schedule_shape"
        case patchSize = "patch_size", patchEncoder = "patch_encoder", diffusionWeight = "diffusion_weight"
        case diffusionObjective = "diffusion_objective", diffusionSteps = "diffusion_steps"
        case captioningNoiseLimit = "captioning_noise_limit", taskTokens = "task_tokens", maskedTokenWeight = "masked_token_weight"
        case understanding
    }

    public static var chameleon: RecipeConfig {
        var c = RecipeConfig()
        c.recipe = "chameleon"
        c.imageObjective = .nextToken
        c.imageAttention = .causal
        c.model.qkNorm = true
        c.model.normPlacement = .reordered
        c.zLoss = 1e-5
        return c
    }

    public static var showo: RecipeConfig {
        var c = RecipeConfig()
        c.recipe = "showo"
        c.imageObjective = .maskedTokens
        c.imageAttention = .bidirectional
        c.model.qkNorm = true
        c.model.normPlacement = .pre
        c.taskTokens = true
        return c
    }

    public static var transfusion: RecipeConfig {
        var c = RecipeConfig()
        c.recipe = "transfusion"
        c.imageObjective = .diffusion
        c.imageAttention = .bidirectional
        c.model.qkNorm = false
        c.model.normPlacement = .pre
        return c
    }

    /// The three generation recipes (the study's and the benchmarks' subjects).
    public static let generationRecipes = ["chameleon", "showo", "transfusion"]
    /// The understanding presets: how today's multimodal LLMs read an image, each on Chameleon's core,
    /// which still generates images as VQ codes (`UnderstandingConfig`). Emu3 (Wang et al. 2024) is the
    /// chameleon preset: VQ codes in and out, next-token prediction, no encoder apart.
    public static let understandingPresets = ["llava", "flamingo", "nvlm-d", "nvlm-x", "nvlm-h", "fuyu", "janus"]
    public static let presetNames = generationRecipes + understandingPresets

    /// Chameleon's core reading images through `encoder`, `connector` and `fusion`.
    static func understanding(_ name: String, _ encoder: UnderstandingConfig.Encoder, _ connector: UnderstandingConfig.Connector,
                              _ fusion: UnderstandingConfig.Fusion) -> RecipeConfig {
        var c = RecipeConfig.chameleon
        c.recipe = name
        c.understanding.encoder = encoder
        c.understanding.connector = connector
        c.understanding.fusion = fusion
        return c
    }

    public static func preset(named name: String) throws -> RecipeConfig {
        switch name {
        case "chameleon": return .chameleon
        case "showo", "show-o": return .showo
        case "transfusion": return .transfusion
        // LLaVA 1.5 (Liu et al. 2024): a frozen CLIP ViT, a 2-layer MLP, the tokens in the sequence.
        case "llava": return understanding(name, .vit, .mlp, .sequence)
        // Flamingo (Alayrac et al. 2022): a frozen encoder, the Perceiver Resampler, gated cross-attention.
        case "flamingo": return understanding(name, .vit, .resampler, .crossAttention)
        // NVLM 1.0 (Dai et al. 2024, §4): InternViT, pixel shuffle + MLP; decoder-only (D), cross-attention (X), hybrid (H).
        case "nvlm-d": return understanding(name, .vit, .pixelShuffle, .sequence)
        case "nvlm-x": return understanding(name, .vit, .pixelShuffle, .crossAttention)
        case "nvlm-h": return understanding(name, .vit, .pixelShuffle, .hybrid)
        // Fuyu-8B (Bavishi et al. 2023): raw patches through one linear layer, no image encoder.
        case "fuyu": return understanding(name, .patches, .linear, .sequence)
        // Janus (Wu et al. 2024): a SigLIP encoder + MLP adaptor for understanding, a VQ tokenizer for
        // generation, in one autoregressive model.
        case "janus": return understanding(name, .vit, .mlp, .sequence)
        default:
            throw ConfigurationError("unknown recipe '\(name)'; the presets are \(presetNames.joined(separator: ", "))")
        }
    }

    /// Positions one image takes in a sequence: h·w codes, or (h/p)² latent patches.
    public var imagePositions: Int {
        imageObjective.usesCodes ? imageGrid * imageGrid : (imageGrid / patchSize) * (imageGrid / patchSize)
    }

    /// The language model's parameters outside its embedding table and output head (the N of the
    /// 6·N·D estimate): the core's, and the gated cross-attention layers' when images enter through
    /// them. The modules that map images to and from the core (patch codec, connector) are not counted.
    public var nonEmbeddingParameterCount: Int {
        guard understanding.crossAttends else { return model.nonEmbeddingParameterCount }
        let d = model.width, layers = (model.layers + understanding.crossAttentionEvery - 1) / understanding.crossAttentionEvery
        // Per layer (GatedCrossAttention): 2 norms, 4 D×D projections, the D → 4D → D feed-forward with biases, 2 gates.
        return model.nonEmbeddingParameterCount + layers * (2 * d + 4 * d * d + (8 * d * d + 5 * d) + 2)
    }

    public func validate() throws {
        try model.validate()
        func fail(_ m: String) -> ConfigurationError { ConfigurationError(m) }
        guard imageGrid > 0 else { throw fail("imageGrid must be positive (got \(imageGrid))") }
        guard (0...1).contains(captionDropout) else { throw fail("captionDropout must lie in [0, 1] (got \(captionDropout))") }
        guard zLoss >= 0 else { throw fail("zLoss must be ≥ 0 (got \(zLoss))") }
        if imageObjective.usesCodes {
            guard imageCodes > 0 else { throw fail("imageCodes must be positive for \(imageObjective.rawValue) (got \(imageCodes))") }
        } else {
            guard [1, 2].contains(patchSize) else { throw fail("patchSize must be 1 or 2 (got \(patchSize))") }
            guard imageGrid % patchSize == 0 else { throw fail("imageGrid \(imageGrid) is not a multiple of patchSize \(patchSize)") }
            guard latentChannels > 0 else { throw fail("latentChannels must be positive (got \(latentChannels))") }
            guard diffusionWeight >= 0 else { throw fail("diffusionWeight must be ≥ 0 (got \(diffusionWeight))") }
            guard diffusionSteps >= 2 else { throw fail("diffusionSteps must be at least 2 (got \(diffusionSteps))") }
            guard (0...diffusionSteps).contains(captioningNoiseLimit) else {
                throw fail("captioningNoiseLimit must lie in 0...diffusionSteps (\(diffusionSteps)), got \(captioningNoiseLimit)")
            }
        }
        guard maskedTokenWeight >= 0 else { throw fail("maskedTokenWeight must be ≥ 0 (got \(maskedTokenWeight))") }
        try understanding.validate(layers: model.layers)
        if maskSchedule == .power || maskSchedule == .sigmoid {
            guard maskScheduleShape > 0 else { throw fail("maskScheduleShape must be > 0 (got \(maskScheduleShape))") }
        }
    }
}

// One experiment, fully described: the recipe (a preset plus any switch changed), the data mixture,
// the tokenizer, the autoencoder, training and evaluation. A YAML file plus `key=value` overrides
// resolve into this value; the resolved value is printed at the start of a run and stored in its log,
// and the same resolved config and seed give the same numbers.
import Foundation
import Fusion
import Yams

struct ExperimentConfig: Configuration, Equatable {
    /// Name of the run (its group in the results file: /runs/NAME).
    var name = "run"
    /// Seed of every random stream: initialisation, data order, masking/noise, sampling.
    var seed: UInt64 = 0
    /// The recipe: `recipe.recipe` names the preset (chameleon, showo, transfusion), every other field
    /// overrides one switch of it (see RecipeConfig).
    var recipe = RecipeConfig.chameleon
    var data = DataConfig()
    var tokenizer = TokenizerConfig()
    var autoencoder = AutoencoderChoice()
    var train = TrainConfig()
    var eval = EvalConfig()

    init() {}

    struct DataConfig: Codable, Equatable {
        enum CodingKeys: String, CodingKey {
            case images, text, classes, reference, testShare = "test_share", splitSeed = "split_seed"
            case textShare = "text_share", imageFirstShare = "image_first_share", trainImages = "train_images"
            case cacheDirectory = "cache_directory", qaShare = "qa_share"
        }
        /// The images: `fashion-mnist` (built in, captions generated from the pixels), or the path of a
        /// JSONL manifest of a PNG folder with captions (Data/ImageFolder.swift).
        var images = DataConfig.fashionMNIST
        /// The text-only documents: `shakespeare` (built in), a folder of .txt files or a .jsonl file of
        /// {"text": …} lines (Data/TextCorpus.swift).
        var text = TextCorpus.builtIn
        /// Names of the manifest's labels 0…K−1, which caption_accuracy looks for in generated captions
        /// ([]: the labels have no names; Fashion-MNIST's built-in images name their own). A list equal to
        /// Fashion-MNIST's class names is read with its synonyms, as the built-in images are.
        var classes: [String] = []
        /// Weights of the reference classifier behind fd_NAME, kid_NAME and t2i_accuracy: the committed
        /// Fashion-MNIST one, or one `fusion reference train --images` trained on your labelled images.
        var reference = ReferenceClassifier.committedPath
        /// Share of a manifest's records held out as the test split when no record names its split.
        var testShare: Float = 0.1
        /// Seed of that held-out choice (apart from `seed`, so that runs of several seeds share a split).
        var splitSeed: UInt64 = 0
        /// Share of training tokens that come from text-only documents (Shakespeare's training plays).
        var textShare: Float = 0.25
        /// Share of image–caption documents with the image first (understanding); the rest are caption
        /// first (generation). 0.2 is the Transfusion paper's order (§4.3.4: 80 % of pairs caption first),
        /// whose Chameleon baseline saw the same data; Chameleon's own rotation is 0.5. Each run logs the
        /// share of its image documents that follow their caption (train/image_conditioned_share).
        var imageFirstShare: Float = 0.2
        /// Use only the first N training images (0: all of them; Fashion-MNIST has 60,000).
        var trainImages = 0
        /// Where prepared data (codes/latents of the training set, the tokenizer) are cached.
        var cacheDirectory = "runs/cache"
        /// Share of image→text documents that ask a templated question about the image and answer it
        /// (ImageQuestions.swift) instead of captioning it; needs labels. 0 keeps every one a caption.
        var qaShare: Float = 0

        static let fashionMNIST = "fashion-mnist"
        var usesFashionMNIST: Bool { images == Self.fashionMNIST }
    }

    struct TokenizerConfig: Codable, Equatable {
        enum CodingKeys: String, CodingKey { case vocabularySize = "vocabulary_size", trainingCharacters = "training_characters" }
        /// Text vocabulary: 256 bytes + merges + special tokens.
        var vocabularySize = 1_000
        /// Characters of training text the BPE merges are learned from (plus captions); 0: all.
        var trainingCharacters = 2_000_000
    }

    struct AutoencoderChoice: Codable, Equatable {
        /// Weights of the discrete autoencoder (Chameleon, Show-o).
        var codes = "results/autoencoders/vq/weights.h5"
        /// Weights of the continuous autoencoder (Transfusion).
        var latents = "results/autoencoders/kl/weights.h5"
        /// Weights of the contrastively trained ViT that recipe.understanding.encoder: vit reads through.
        var vision = "results/encoders/vit/weights.h5"
    }

    struct TrainConfig: Codable, Equatable {
        enum CodingKeys: String, CodingKey {
            case steps, batchSize = "batch_size", learningRate = "learning_rate", warmupSteps = "warmup_steps"
            case finalLearningRateRatio = "final_learning_rate_ratio", weightDecay = "weight_decay"
            case gradientClip = "gradient_clip", logEvery = "log_every", evalEvery = "eval_every"
            case checkpointEvery = "checkpoint_every", stages
        }
        var steps = 1_000
        /// Sequences per step (each `recipe.model.contextLength` positions).
        var batchSize = 16
        var learningRate: Float = 1e-3
        var warmupSteps = 100
        /// The cosine schedule ends at learningRate · this.
        var finalLearningRateRatio: Float = 0.1
        var weightDecay: Float = 0.1
        var gradientClip: Float = 1.0
        var logEvery = 10
        /// Steps between evaluations (and log flushes); the last step is always evaluated.
        var evalEvery = 250
        var checkpointEvery = 250
        /// Phases that train parts of the model at their own learning rates (`TrainingStages.swift`);
        /// [] trains everything throughout.
        var stages: [TrainingStage] = []
    }

    struct EvalConfig: Codable, Equatable {
        enum CodingKeys: String, CodingKey {
            case textTokens = "text_tokens", images, captions, guidanceScale = "guidance_scale", guidanceScales = "guidance_scales"
            case maskgitSteps = "maskgit_steps", denoisingSteps = "denoising_steps", diffusionSampler = "diffusion_sampler", temperature
            case topK = "top_k", captionTokens = "caption_tokens", fewShot = "few_shot"
        }
        /// Held-out text tokens scored for text_ppl.
        var textTokens = 16_384
        /// N generated and N real test images for fd_fmnist / kid_fmnist / t2i_accuracy.
        var images = 200
        /// Test images captioned for caption_accuracy.
        var captions = 100
        /// Classifier-free guidance scale s in (1 + s)·c − s·u, i.e. w = 1 + s in the u + w·(c − u) convention
        /// of the Transfusion and Imagen papers; the scale fd_fmnist, kid_fmnist and t2i_accuracy are logged at.
        var guidanceScale: Float = 2
        /// Further scales each evaluation samples at, for the quality/agreement curve over guidance
        /// (eval_guidance/ in the log: fd, kid and t2i per scale, with N) and each recipe's best-FD scale:
        /// papers tune guidance per model, so one shared scale favours some recipes. guidance_scale is
        /// always among them. Each scale s > 0 costs a guided sampling pass (twice an unguided one).
        var guidanceScales: [Float] = [0]
        /// Every scale sampled, ascending: `guidanceScales` and `guidanceScale`.
        var allGuidanceScales: [Float] { Array(Set(guidanceScales + [guidanceScale])).sorted() }
        /// Parallel decoding steps of Show-o's MaskGIT sampler (Show-o §3.3 uses 12–18 at 256²).
        var maskgitSteps = 12
        /// Denoising steps of Transfusion's sampler (DDIM 50 by default, up to recipe.diffusion_steps).
        var denoisingSteps = 50
        var diffusionSampler = DiffusionSamplerKind.ddim
        var temperature: Float = 1
        var topK = 0
        var captionTokens = 16
        /// Labelled examples in context for each few-shot classification score (fewshot_accuracy_kK), each
        /// over the first `captions` test images; [] for none.
        var fewShot = [0, 2, 4]
    }

    /// Evaluation keys that only some image objectives read (the rest apply to every recipe): the sampler
    /// settings of one recipe given to another would be silently ignored, so `fusion eval` refuses them.
    static let evalKeysByObjective: [String: [RecipeConfig.ImageObjective]] = [
        "maskgit_steps": [.maskedTokens],
        "temperature": [.nextToken, .maskedTokens], "top_k": [.nextToken, .maskedTokens],
        "denoising_steps": [.diffusion], "diffusion_sampler": [.diffusion],
    ]

    func validate() throws {
        do { try recipe.validate() } catch let error as ConfigurationError { throw ConfigError.outOfRange(key: "recipe", value: "invalid", requirement: "must be consistent: \(error)") }
        try require(!name.isEmpty && !name.contains("/"), "name", name, "must be non-empty and without '/'")
        try require((0...1).contains(data.textShare), "data.text_share", data.textShare, "must lie in [0, 1]")
        try require((0...1).contains(data.imageFirstShare), "data.image_first_share", data.imageFirstShare, "must lie in [0, 1]")
        try require((0...1).contains(data.qaShare), "data.qa_share", data.qaShare, "must lie in [0, 1]")
        try require(data.trainImages >= 0, "data.train_images", data.trainImages, "must be ≥ 0 (0 means all)")
        try require(data.testShare > 0 && data.testShare < 1, "data.test_share", data.testShare, "must lie strictly between 0 and 1")
        try require(data.usesFashionMNIST || data.images.hasSuffix(".jsonl"), "data.images", data.images,
                    "must be \(DataConfig.fashionMNIST) or the path of a JSONL manifest (….jsonl)")
        try require(data.classes.isEmpty || !data.usesFashionMNIST, "data.classes", data.classes,
                    "must be [] with the built-in Fashion-MNIST images, which name their own classes")
        try require(Set(data.classes).count == data.classes.count && data.classes.allSatisfy { !$0.isEmpty }, "data.classes", data.classes,
                    "must list distinct, non-empty names")
        try require(tokenizer.vocabularySize >= 256 + SpecialToken.allCases.count + 1, "tokenizer.vocabulary_size", tokenizer.vocabularySize,
                    "must exceed 256 bytes + \(SpecialToken.allCases.count) special tokens")
        try require(tokenizer.trainingCharacters >= 0, "tokenizer.training_characters", tokenizer.trainingCharacters, "must be ≥ 0 (0 means all)")
        try require(train.steps > 0, "train.steps", train.steps, "must be at least 1")
        try require(train.batchSize > 0, "train.batch_size", train.batchSize, "must be at least 1")
        try require(train.learningRate > 0, "train.learning_rate", train.learningRate, "must be positive")
        try require(train.warmupSteps >= 0 && train.warmupSteps < train.steps, "train.warmup_steps", train.warmupSteps,
                    "must lie in 0..<train.steps (\(train.steps))")
        try require((0...1).contains(train.finalLearningRateRatio), "train.final_learning_rate_ratio", train.finalLearningRateRatio, "must lie in [0, 1]")
        try require(train.weightDecay >= 0, "train.weight_decay", train.weightDecay, "must be ≥ 0")
        try require(train.gradientClip > 0, "train.gradient_clip", train.gradientClip, "must be positive")
        if !train.stages.isEmpty {
            let total = train.stages.reduce(0) { $0 + $1.steps }
            try require(total == train.steps, "train.stages", "steps \(train.stages.map(\.steps))",
                        "must add up to train.steps (\(train.steps)), they add up to \(total); change one or the other")
            for (index, stage) in train.stages.enumerated() {
                let key = "train.stages[\(index + 1)]"
                try require(stage.steps > 0, key + ".steps", stage.steps, "must be at least 1")
                try require(!stage.train.isEmpty, key + ".train", stage.train.map(\.rawValue),
                            "must name what the stage trains: \(TrainingStage.Module.choices)")
                try require((stage.learningRate ?? train.learningRate) > 0, key + ".learning_rate", stage.learningRate ?? 0, "must be positive")
                if let warmup = stage.warmupSteps {
                    try require((0..<stage.steps).contains(warmup), key + ".warmup_steps", warmup, "must lie in 0..<the stage's steps (\(stage.steps))")
                }
            }
        }
        for (key, value) in [("log_every", train.logEvery), ("eval_every", train.evalEvery), ("checkpoint_every", train.checkpointEvery)] {
            try require(value > 0, "train.\(key)", value, "must be at least 1")
        }
        // A log row averages the steps since the previous one; a resumed run restarts that window at its
        // checkpoint, so checkpoints must fall on log rows for a resumed run to log the same numbers.
        try require(train.checkpointEvery % train.logEvery == 0, "train.checkpoint_every", train.checkpointEvery,
                    "must be a multiple of train.log_every (\(train.logEvery)) so that a resumed run logs the same rows")
        try require(eval.textTokens >= 2, "eval.text_tokens", eval.textTokens, "must be at least 2")
        try require(eval.images >= 4, "eval.images", eval.images, "must be at least 4 (KID draws subsets of half of them, of at least 2)")
        try require(eval.captions >= 1, "eval.captions", eval.captions, "must be at least 1")
        try require(eval.guidanceScale >= 0 && eval.guidanceScale.isFinite, "eval.guidance_scale", eval.guidanceScale, "must be finite and ≥ 0")
        try require(eval.guidanceScales.allSatisfy { $0 >= 0 && $0.isFinite } && eval.guidanceScales.count <= 8, "eval.guidance_scales",
                    eval.guidanceScales, "must list at most 8 finite scales ≥ 0 (e.g. [0, 1, 2, 4]; [] for guidance_scale alone)")
        try require(eval.maskgitSteps >= 1, "eval.maskgit_steps", eval.maskgitSteps, "must be at least 1")
        try require((1...recipe.diffusionSteps).contains(eval.denoisingSteps), "eval.denoising_steps", eval.denoisingSteps,
                    "must lie in 1...recipe.diffusion_steps (\(recipe.diffusionSteps))")
        try require(eval.temperature >= 0, "eval.temperature", eval.temperature, "must be ≥ 0 (0 is greedy)")
        try require(eval.topK >= 0, "eval.top_k", eval.topK, "must be ≥ 0 (0 means no top-k)")
        try require(eval.captionTokens >= 1, "eval.caption_tokens", eval.captionTokens, "must be at least 1")
        try require(eval.fewShot.allSatisfy { (0...16).contains($0) } && Set(eval.fewShot).count == eval.fewShot.count, "eval.few_shot",
                    eval.fewShot, "must list distinct example counts in 0...16 (e.g. [0, 2, 4]; [] for none)")
    }

    /// Loads a YAML file (nil: defaults) with `key=value` overrides. The recipe preset named by
    /// `recipe.recipe` (or the shorthands `recipe: showo` in the file, `recipe=showo` on the command
    /// line) supplies the defaults of every recipe switch, so a file states only what it changes.
    static func load(file: String?, overrides: [String]) throws -> ExperimentConfig {
        var text = try file.map(ConfigLoader.readFile)
        // Shorthands: a scalar `recipe:` in the file, `recipe=NAME` on the command line.
        var preset = "chameleon"
        if let original = text, let tree = try ConfigLoader.compose(original, source: file ?? "<string>"), let recipe = tree.mapping?["recipe"] {
            if let name = recipe.string { preset = name; text = rewriteRecipeShorthand(original, tree: tree, source: file ?? "<string>") }
            else if let name = recipe.mapping?["recipe"]?.string { preset = name }
        }
        var resolvedOverrides: [String] = []
        for override in overrides {
            if override.hasPrefix("recipe=") { resolvedOverrides.append("recipe.recipe=" + override.dropFirst("recipe=".count)) } else { resolvedOverrides.append(override) }
        }
        for override in resolvedOverrides where override.hasPrefix("recipe.recipe=") { preset = String(override.dropFirst("recipe.recipe=".count)) }
        var defaults = ExperimentConfig()
        do { defaults.recipe = try RecipeConfig.preset(named: preset) } catch let error as ConfigurationError {
            throw ConfigError.outOfRange(key: "recipe.recipe", value: preset, requirement: "must name a preset: \(RecipeConfig.presetNames.joined(separator: ", ")) (\(error))")
        }
        return try ConfigLoader.load(ExperimentConfig.self, yaml: text, source: file ?? "<defaults>", overrides: resolvedOverrides, defaults: defaults)
    }

    /// The file's text with `recipe: NAME` replaced by the mapping `recipe: {recipe: NAME}`.
    private static func rewriteRecipeShorthand(_ text: String, tree: Node, source: String) -> String {
        guard var pairs = tree.mapping.map({ Array($0.map { ($0.key, $0.value) }) }),
              let index = pairs.firstIndex(where: { $0.0.string == "recipe" }) else { return text }
        pairs[index].1 = Node([(Node("recipe"), pairs[index].1)])
        return (try? Yams.serialize(node: Node(pairs))) ?? text
    }
}

// A finished (or checkpointed) run opened again: its resolved config from the checkpoint, its data
// (from the cache), and the model with the checkpoint's weights. What `fusion eval` and `fusion sample`
// start from.
import Foundation
import Fusion
import Yams

struct TrainedRun {
    let config: ExperimentConfig
    let yaml: String
    let data: MultimodalData
    let model: FusionModel
    let step: Int

    init(directory: String, log: (String) -> Void = { print($0) }) throws {
        let path = "\(directory)/checkpoint.h5"
        guard FileManager.default.fileExists(atPath: path) else {
            throw RunFailure(description: "\(directory) holds no checkpoint.h5: give the directory of a run made by fusion train (its --out)")
        }
        // Every value is read only after its dataset's size is checked against the file's, so that a
        // damaged shape cannot ask for more memory than the file could ever have held.
        let file = try HDF5File.open(path)
        let elements = try ResultsSchema.requireDatasetsFitInFile(file)
        let checkpoint = try Checkpoint.read(from: path)
        guard let yaml = checkpoint.metadata["config"] else {
            throw RunFailure(description: "\(path) carries no config: it was not written by fusion train")
        }
        let preset = (try? ConfigLoader.compose(yaml, source: path))??.mapping?["recipe"]?.mapping?["recipe"]?.string ?? "chameleon"
        var defaults = ExperimentConfig()
        defaults.recipe = try RecipeConfig.preset(named: preset)
        config = try ConfigLoader.load(ExperimentConfig.self, yaml: yaml, source: "\(path) (config)", defaults: defaults)
        try Self.requireEveryKey(of: config, in: yaml, path: path)
        try Self.requireModelFits(config.recipe.model, values: elements, path: path)
        self.yaml = yaml
        guard try file.root.exists("tokenizer") else {
            throw RunFailure(description: "\(path) holds no tokenizer: it was written by an older fusion train; train the run again")
        }
        let tokenizer = try BPETokenizer.read(from: file.root.group("tokenizer"))
        try file.close()
        data = try MultimodalData(config: config, tokenizer: tokenizer, log: log)
        let recipe = data.imageGeometry(of: config.recipe)
        var generator = RandomGenerator(seed: config.seed).split(key: "init")
        model = try FusionModel(config: recipe, vocabulary: data.vocabulary, visionEncoder: data.visionEncoder, generator: &generator)
        try checkpoint.restore(into: model.parametersByName())
        step = checkpoint.step
    }

    /// Refuses a stored config that lacks keys of its own resolution in the sections that make the model
    /// and its data: fusion train stores the resolved config, every key spelled out, so a missing one is
    /// damage (an emptied config would otherwise run with every default, e.g. the default data cache and
    /// all 60,000 training images). train and eval keys may be missing: a key added to them later has a
    /// default that reads an older run as it was made.
    static func requireEveryKey(of config: ExperimentConfig, in yaml: String, path: String) throws {
        guard let resolved = try ConfigLoader.compose(try ConfigLoader.yaml(config), source: "the resolved config"),
              let stored = try ConfigLoader.compose(yaml, source: "\(path) (config)") else {
            throw RunFailure(description: "\(path): its config is empty; the checkpoint is damaged: train the run again")
        }
        func missing(_ resolved: Node, _ stored: Node, _ prefix: String) -> [String] {
            ConfigLoader.keys(of: resolved).flatMap { key -> [String] in
                guard let below = resolved.mapping?[key], below.mapping != nil else {
                    return stored.mapping?[key] == nil ? [prefix + key] : []
                }
                guard let storedBelow = stored.mapping?[key] else { return [prefix + key] }
                return missing(below, storedBelow, prefix + key + ".")
            }
        }
        let absent = missing(resolved, stored, "").filter { sectionsSpelledOut.contains(String($0.prefix { $0 != "." })) }
        guard absent.isEmpty else {
            throw RunFailure(description: "\(path): its config lacks \(absent.count) key(s) of a resolved config ("
                             + absent.prefix(5).joined(separator: ", ") + (absent.count > 5 ? ", …" : "")
                             + "); fusion train stores every key of the model and its data, so the checkpoint is damaged: train the run again")
        }
    }

    /// The top-level keys under which a checkpoint's config must have every key of its resolution.
    static let sectionsSpelledOut: Set<String> = ["name", "seed", "recipe", "data", "tokenizer", "autoencoder"]

    /// Refuses a config whose model could not be the one the checkpoint's `values` numbers are the weights
    /// of (every block has a D×D query projection and a D×F MLP projection), before the model is built:
    /// a damaged config naming a huge model would otherwise be allocated (or overflow its size) only to
    /// be refused by the strict restore.
    ///
    /// The context length sets no weight's shape, so it is bounded by `longestContext` instead: evaluation
    /// packs text into rows of that many positions.
    static func requireModelFits(_ model: TransformerConfig, values: Int, path: String) throws {
        // In this order, so that no product can overflow: d² ≤ values, then L·d² ≤ values and d·F ≤ values.
        let d = model.width
        guard d <= values / max(d, 1), model.layers <= values / max(d * d, 1),
              model.resolvedMLPHidden <= values / max(d, 1) else {
            throw RunFailure(description: "\(path): its config names a model (width \(d), \(model.layers) layers, MLP width \(model.mlpHidden)) "
                             + "larger than the \(values) numbers the checkpoint holds; the config does not belong to these weights "
                             + "(the checkpoint is damaged): train the run again")
        }
        guard model.contextLength <= longestContext else {
            throw RunFailure(description: "\(path): its config names a context of \(model.contextLength) positions, more than the "
                             + "\(longestContext) Fusion evaluates; the config is damaged: train the run again")
        }
    }

    /// 256 × the longest context of any config here (configs/small.yaml: 256): longer ones are damage.
    static let longestContext = 65_536

    /// Images [N, 1, 32, 32] in [0, 1] generated from one caption.
    func sample(prompt: String, count: Int, guidanceScale: Float, generator: inout RandomGenerator) throws -> Tensor {
        let caption = data.tokenizer.encode(prompt)
        let captions = Array(repeating: caption, count: count)
        let images: Tensor
        if model.config.imageObjective.usesCodes {
            var options = TokenSamplingOptions()
            options.temperature = config.eval.temperature
            options.topK = config.eval.topK > 0 ? config.eval.topK : nil
            let codes = try model.sampleImageCodes(captions: captions, guidanceScale: guidanceScale, options: options,
                                                   steps: config.eval.maskgitSteps, generator: &generator)
            images = withoutGradients { data.autoencoder.decodeCodes(codes) }
        } else {
            let latents = try model.sampleImageLatents(captions: captions, guidanceScale: guidanceScale, sampler: config.eval.diffusionSampler,
                                                       steps: config.eval.denoisingSteps, generator: &generator)
            images = withoutGradients { data.autoencoder.decodeLatents(latents) }
        }
        for i in 0..<images.count { images.data[i] = min(max(images.data[i], 0), 1) }
        return images
    }
}

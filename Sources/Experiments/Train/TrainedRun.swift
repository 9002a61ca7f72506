// A finished (or checkpointed) run opened again: its resolved config from the checkpoint, its data
// (from the cache), and the model with the checkpoint's weights. What `fusion eval` and `fusion sample`
// start from.
import Foundation
import Fusion

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
        let checkpoint = try Checkpoint.read(from: path)
        guard let yaml = checkpoint.metadata["config"] else {
            throw RunFailure(description: "\(path) carries no config: it was not written by fusion train")
        }
        let preset = (try? ConfigLoader.compose(yaml, source: path))??.mapping?["recipe"]?.mapping?["recipe"]?.string ?? "chameleon"
        var defaults = ExperimentConfig()
        defaults.recipe = try RecipeConfig.preset(named: preset)
        config = try ConfigLoader.load(ExperimentConfig.self, yaml: yaml, source: "\(path) (config)", defaults: defaults)
        self.yaml = yaml
        let file = try HDF5File.open(path)
        guard try file.root.exists("tokenizer") else {
            throw RunFailure(description: "\(path) holds no tokenizer: it was written by an older fusion train; train the run again")
        }
        let tokenizer = try BPETokenizer.read(from: file.root.group("tokenizer"))
        try file.close()
        data = try MultimodalData(config: config, tokenizer: tokenizer, log: log)
        var recipe = config.recipe
        recipe.imageGrid = data.autoencoder.gridSide
        if recipe.imageObjective.usesCodes { recipe.imageCodes = data.autoencoder.codebookSize } else { recipe.latentChannels = data.autoencoder.latentChannels }
        var generator = RandomGenerator(seed: config.seed).split(key: "init")
        model = try FusionModel(config: recipe, vocabulary: data.vocabulary, generator: &generator)
        try checkpoint.restore(into: model.parametersByName())
        step = checkpoint.step
    }

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

// One training run of a recipe: data, model, AdamW with warm-up + cosine, gradient clipping, an HDF5
// log appended as it goes and flushed at every evaluation, checkpoints, and `--resume`, which continues
// a killed run to the same numbers as one never interrupted (the data and the recipe's randomness are
// functions of (seed, step); parameters, optimiser state and step come from the checkpoint).
import Foundation
import Fusion

struct RunFailure: Error, CustomStringConvertible { let description: String }

enum ExperimentRun {
    struct Paths {
        let directory: String
        var log: String { "\(directory)/log.h5" }
        var checkpoint: String { "\(directory)/checkpoint.h5" }
        func samples(step: Int) -> String { "\(directory)/samples-step\(step).png" }
    }

    /// Trains `config` in `directory`; returns the last evaluation's metrics.
    @discardableResult
    static func run(_ config: ExperimentConfig, yaml: String, directory: String, overwrite: Bool, resume: Bool,
                    stopAfterStep: Int? = nil) throws -> [(String, Double)] {
        try config.validate()
        let paths = Paths(directory: directory)
        let fm = FileManager.default
        if !overwrite && !resume {
            for path in [paths.log, paths.checkpoint] where fm.fileExists(atPath: path) {
                throw RunFailure(description: "\(path) exists already: pass --resume to continue that run, --overwrite to replace it, or choose another directory")
            }
        }
        if resume && !fm.fileExists(atPath: paths.checkpoint) {
            throw RunFailure(description: "--resume: no checkpoint at \(paths.checkpoint); start the run without --resume")
        }
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let progress = Progress(total: config.train.steps)
        progress.say("fusion train: resolved config\n\(yaml)")

        let reference = try ReferenceClassifier.loadCommitted()
        let data = try MultimodalData(config: config, log: progress.say)
        var recipe = config.recipe
        recipe.imageGrid = data.autoencoder.gridSide
        if recipe.imageObjective.usesCodes { recipe.imageCodes = data.autoencoder.codebookSize } else { recipe.latentChannels = data.autoencoder.latentChannels }
        let root = RandomGenerator(seed: config.seed)
        var initGenerator = root.split(key: "init")
        let model = try FusionModel(config: recipe, vocabulary: data.vocabulary, generator: &initGenerator)
        var resolved = config
        resolved.recipe = model.config
        let parameters = model.namedParameters()
        let optimizer = AdamW(parameters: parameters, learningRate: config.train.learningRate, weightDecay: config.train.weightDecay)
        let schedule = WarmupCosineSchedule(peak: config.train.learningRate, warmupSteps: config.train.warmupSteps,
                                            totalSteps: config.train.steps, floor: config.train.learningRate * config.train.finalLearningRateRatio)
        let stream = DocumentStream(data: data, model: model, config: resolved)
        let lossGenerator = root.split(key: "objective")
        let nonEmbedding = model.config.model.nonEmbeddingParameterCount
        let tokensPerStep = config.train.batchSize * model.config.model.contextLength

        var startStep = 0
        var countedFlops: Int64 = 0
        let log: RunLog
        if resume {
            let checkpoint = try Checkpoint.read(from: paths.checkpoint)
            try checkpoint.restore(into: model.parametersByName())
            try optimizer.load(state: checkpoint.optimizerState, stepCount: checkpoint.step)
            startStep = checkpoint.step
            countedFlops = Int64(checkpoint.metadata["counted_flops"] ?? "0") ?? 0
            guard checkpoint.metadata["config"] == yaml else {
                throw RunFailure(description: "--resume: the config differs from the one \(paths.checkpoint) was trained with; resume with the same config and overrides")
            }
            log = try RunLog(resuming: paths.log, runName: config.name, atStep: startStep)
            progress.say("fusion train: resumed at step \(startStep) from \(paths.checkpoint)")
        } else {
            log = try RunLog(path: paths.log, runName: config.name, config: yaml, seed: config.seed, recipe: model.config.recipe,
                             attributes: ["parameter_count": Int64(model.parameterCount),
                                          "non_embedding_parameter_count": Int64(nonEmbedding),
                                          "tokens_per_step": Int64(tokensPerStep)],
                             strings: ["autoencoder": data.autoencoderPath, "autoencoder_sha256": data.autoencoderSHA256],
                             overwrite: overwrite)
            try reference.record(in: log.run)
        }
        progress.say("fusion train: \(model.config.recipe), \(model.parameterCount) parameters (\(nonEmbedding) non-embedding), "
                     + "\(config.train.steps) steps of \(config.train.batchSize)×\(model.config.model.contextLength) positions")

        var window = LossWindow()
        progress.beginTraining(at: startStep)
        var lastMetrics: [(String, Double)] = []
        for step in startStep..<config.train.steps {
            let started = Date()
            let batch = try model.layout.pack(stream.documents(step: step), length: model.config.model.contextLength, rows: config.train.batchSize)
            var g = lossGenerator.stream(step)
            model.zeroGrad()
            FlopCounter.reset()
            let loss = model.loss(batch, generator: &g)
            let value = loss.total.item
            guard value.isFinite else {
                throw RunFailure(description: "step \(step): the loss is \(value) (parts \(loss.parts)); lower train.learningRate or raise train.warmupSteps, and resume from the last checkpoint")
            }
            loss.total.backward()
            let norm = clipGradientNorm(parameters.map(\.tensor), maxNorm: config.train.gradientClip)
            guard norm.isFinite else {
                throw RunFailure(description: "step \(step): the gradient norm is \(norm) (non-finite in \(nonFiniteGradientNames(parameters).prefix(5).joined(separator: ", "))); lower train.learning_rate and resume from the last checkpoint")
            }
            optimizer.learningRate = schedule.rate(at: step)
            optimizer.step()
            countedFlops += FlopCounter.total
            window.add(loss, norm: norm, seconds: Date().timeIntervalSince(started), tokens: tokensPerStep)

            let done = step + 1
            if done % config.train.logEvery == 0 || done == config.train.steps {
                var values = window.means()
                values += [("learning_rate", Double(optimizer.learningRate)), ("tokens_per_second", window.tokensPerSecond),
                           ("flops_counted", Double(countedFlops)), ("flops_6nd", 6 * Double(nonEmbedding) * Double(done * tokensPerStep))]
                try log.append("train", step: done, values)
                progress.update(step: done, values: values, tokensPerSecond: window.tokensPerSecond)
                window = LossWindow()
            }
            if done % config.train.evalEvery == 0 || done == config.train.steps {
                let evaluation = Evaluation(model: model, data: data, config: resolved, progress: progress, metrics: ImageMetrics(reference))
                lastMetrics = try evaluation.run(step: done, log: log, samplesPath: paths.samples(step: done))
                try log.append("eval", step: done, lastMetrics + [("flops_counted", Double(countedFlops))])
                try log.flush()
                progress.say("eval @\(done): " + lastMetrics.map { "\($0.0) \(String(format: "%.4g", $0.1))" }.joined(separator: ", "))
            }
            if done % config.train.checkpointEvery == 0 || done == config.train.steps {
                // No generator state is saved: the data and the objective's randomness are functions of (seed, step).
                let checkpoint = Checkpoint(step: done, tensors: model.parametersByName(), optimizerState: optimizer.state,
                                            metadata: ["config": yaml, "counted_flops": String(countedFlops), "recipe": model.config.recipe])
                try checkpoint.write(to: paths.checkpoint, overwrite: true)
                // The tokenizer is saved with the model, so the run can be sampled without the cache.
                let file = try HDF5File.open(paths.checkpoint, writable: true)
                try data.tokenizer.write(to: try file.root.createGroup("tokenizer"))
                try file.close()
                try log.flush()
            }
            if let stopAfterStep, done == stopAfterStep {
                progress.say("fusion train: stopped after step \(done) as asked (--stop-after-step); continue with --resume")
                return lastMetrics
            }
        }
        progress.finish()
        // The mark a sweep looks for: this run reached its last step and its log is complete.
        let summary = lastMetrics.map { "\($0.0): \($0.1)" }.joined(separator: "\n")
        try summary.write(toFile: "\(directory)/finished", atomically: true, encoding: .utf8)
        return lastMetrics
    }
}

extension ExperimentRun {
    /// FLOPs of one training step of `config`'s model per sequence position, counted by the operations
    /// themselves on the run's first batch (forward and backward, no optimiser), beside the 6·N
    /// estimate of the papers (N non-embedding parameters). Nothing is trained.
    static func flopsPerPosition(_ config: ExperimentConfig) throws -> (parameters: Int, nonEmbedding: Int, counted: Double, estimate: Double) {
        let data = try MultimodalData(config: config, log: { print($0) })
        var recipe = config.recipe
        recipe.imageGrid = data.autoencoder.gridSide
        if recipe.imageObjective.usesCodes { recipe.imageCodes = data.autoencoder.codebookSize } else { recipe.latentChannels = data.autoencoder.latentChannels }
        var generator = RandomGenerator(seed: config.seed).split(key: "init")
        let model = try FusionModel(config: recipe, vocabulary: data.vocabulary, generator: &generator)
        let stream = DocumentStream(data: data, model: model, config: config)
        let batch = try model.layout.pack(stream.documents(step: 0), length: recipe.model.contextLength, rows: config.train.batchSize)
        var objective = RandomGenerator(seed: config.seed).split(key: "objective").stream(0)
        let flops = FlopCounter.measure {
            model.zeroGrad()
            model.loss(batch, generator: &objective).total.backward()
        }
        let positions = Double(batch.rows * batch.length)
        let nonEmbedding = recipe.model.nonEmbeddingParameterCount
        return (model.parameterCount, nonEmbedding, Double(flops) / positions, 6 * Double(nonEmbedding))
    }
}

/// Means of the losses and rates over the steps since the last log row.
struct LossWindow {
    var sums: [String: Double] = [:], order: [String] = []
    var steps = 0, seconds = 0.0, tokens = 0

    mutating func add(_ loss: RecipeLoss, norm: Float, seconds: Double, tokens: Int) {
        func add(_ name: String, _ value: Double) {
            if sums[name] == nil { order.append(name) }
            sums[name, default: 0] += value
        }
        add("loss", Double(loss.total.item))
        for part in loss.parts { add(part.name, Double(part.value)) }
        add("grad_norm", Double(norm))
        steps += 1
        self.seconds += seconds
        self.tokens += tokens
    }

    func means() -> [(String, Double)] { order.map { ($0, sums[$0]! / Double(max(steps, 1))) } }
    var tokensPerSecond: Double { Double(tokens) / max(seconds, 1e-9) }
}

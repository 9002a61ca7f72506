// One training run of a recipe: data, model, AdamW with warm-up + cosine, gradient clipping, an HDF5
// log appended as it goes and flushed at every evaluation, checkpoints, and `--resume`, which continues
// a killed run to the same numbers as one never interrupted (the data and the recipe's randomness are
// functions of (seed, step); parameters, optimiser state and step come from the checkpoint).
//
// Under mpirun (or srun) with K ranks the run is data-parallel: every rank builds the same model and
// the same step's batch, computes the loss of its B/K rows (weighted by the whole batch's normalisers),
// and the gradients are summed over the ranks before the one optimiser step every rank takes alike.
// Rank 0 alone holds the directory's lock and writes the log, the checkpoints and the samples, so the
// files are those of one process whatever K, and a run resumes with any K that divides the batch.
import Foundation
import Fusion

struct RunFailure: Error, CustomStringConvertible { let description: String }

enum ExperimentRun {
    struct Paths {
        let directory: String
        var log: String { "\(directory)/log.h5" }
        var checkpoint: String { "\(directory)/checkpoint.h5" }
        /// The mark a sweep looks for: this run reached its last step and its log is complete.
        var finished: String { "\(directory)/finished" }
        func samples(step: Int) -> String { "\(directory)/samples-step\(step).png" }
    }

    /// Trains `config` in `directory`; returns the last evaluation's metrics.
    ///
    /// With `resume`, continues from the directory's checkpoint (restoring the log as it was at that
    /// step), starts from step 0 when the run was killed before its first checkpoint, and changes nothing
    /// when the run has finished. `allowChanges` names config keys that may differ from the checkpoint's.
    /// `command` is how the user started it, for the messages that say how to continue.
    @discardableResult
    static func run(_ config: ExperimentConfig, yaml: String, directory: String, overwrite: Bool, resume: Bool,
                    allowChanges: [String] = [], command: [String]? = nil, stopAfterStep: Int? = nil) throws -> [(String, Double)] {
        try config.validate()
        let world = Communicator.world
        guard config.train.batchSize % world.size == 0 else {
            throw RunFailure(description: "train.batch_size \(config.train.batchSize) is the global batch, split by rows over the \(world.size) ranks, "
                             + "and \(world.size) does not divide it: start \(divisors(of: config.train.batchSize).map { "-np \($0)" }.joined(separator: ", ")) "
                             + "instead, or set train.batch_size to a multiple of \(world.size)")
        }
        let paths = Paths(directory: directory)
        let fm = FileManager.default
        let resumeCommand = ResumeCommand(command ?? ["fusion", "train", "CONFIG", "[overrides]", "--out", directory])
        var lock: RunDirectoryLock? = nil
        if world.isRoot {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            lock = try RunDirectoryLock(directory)
        }
        defer { lock?.release() }

        let hasCheckpoint = fm.fileExists(atPath: paths.checkpoint)
        if !overwrite && !resume && world.isRoot {
            for path in [paths.log, paths.checkpoint] where fm.fileExists(atPath: path) {
                throw RunFailure(description: "\(path) exists already: pass --resume to continue that run, --overwrite to replace it, or choose another directory")
            }
        }
        var checkpoint: Checkpoint? = nil
        var changes: [ConfigChange] = []
        if resume && hasCheckpoint {
            // A damaged file's shapes must not size an allocation: bound every dataset by the file first.
            let file = try HDF5File.open(paths.checkpoint)
            _ = try ResultsSchema.requireDatasetsFitInFile(file)
            try file.close()
            let saved = try Checkpoint.read(from: paths.checkpoint)
            guard let savedYAML = saved.metadata["config"] else {
                throw RunFailure(description: "--resume: \(paths.checkpoint) carries no config: it was not written by fusion train; train the run again with --overwrite")
            }
            changes = try ConfigChange.between(saved: savedYAML, current: yaml, defaults: try ConfigLoader.yaml(ExperimentConfig()))
            try ConfigChange.check(changes, allowed: allowChanges, checkpoint: paths.checkpoint)
            if saved.step >= config.train.steps && fm.fileExists(atPath: paths.finished) {
                print("fusion train: \(config.name) in \(directory) finished at step \(saved.step) of \(config.train.steps); nothing to do "
                      + "(its metrics: fusion eval \(directory); to train it further, raise train.steps and resume with --allow-change train.steps)")
                return finishedMetrics(paths)
            }
            checkpoint = saved
        } else if resume && fm.fileExists(atPath: paths.finished) {
            throw RunFailure(description: "--resume: \(directory) holds a finished run but no checkpoint.h5, so it cannot be continued; "
                             + "train it again with --overwrite, or choose another directory")
        }
        // Temporary files of a process killed mid-write; ours to remove, as we hold the directory's lock.
        for stale in Checkpoint.abandonedPartialFiles(of: paths.checkpoint) + [paths.log + ".partial"] where world.isRoot && fm.fileExists(atPath: stale) {
            try fm.removeItem(atPath: stale)
            print("fusion train: removed \(stale), left by a process killed while writing it")
        }

        let progress = Progress(total: config.train.steps, speaks: world.isRoot)
        progress.say("fusion train: resolved config\n\(yaml)")
        if resume && checkpoint == nil && fm.fileExists(atPath: paths.log) {
            progress.say("fusion train: --resume: no checkpoint in \(directory) yet (the run stopped before its first, at step "
                         + "\(config.train.checkpointEvery)); starting from step 0")
        }

        let times = PhaseTimes()
        let reference = try ReferenceClassifier.loadCommitted(path: config.data.reference)
        let data = try times.measure("data") { try MultimodalData(config: config, log: progress.say) }
        let coverage = MetricCoverage(metrics: ImageMetrics(reference), data: data)
        if !config.data.usesFashionMNIST { progress.say("fusion train: \(coverage.description)") }
        let recipe = data.imageGeometry(of: config.recipe)
        let root = RandomGenerator(seed: config.seed)
        var initGenerator = root.split(key: "init")
        let model = try FusionModel(config: recipe, vocabulary: data.vocabulary, visionEncoder: data.visionEncoder, generator: &initGenerator)
        var resolved = config
        resolved.recipe = model.config
        let parameters = model.namedParameters()
        let optimizer = AdamW(parameters: parameters, learningRate: config.train.learningRate, weightDecay: config.train.weightDecay)
        let plan = try TrainingPlan(config.train, parameters: parameters.map(\.name))
        let stream = DocumentStream(data: data, model: model, config: resolved)
        let specialIDs = Set(data.vocabulary.specialIDs)
        let lossGenerator = root.split(key: "objective")
        let nonEmbedding = model.config.nonEmbeddingParameterCount
        let tokensPerStep = config.train.batchSize * model.config.model.contextLength
        let rows = world.share(of: config.train.batchSize)
        var gradients = GradientAllreduce(communicator: world)

        var startStep = 0
        var countedFlops: Int64 = 0
        var window = LossWindow()
        let log: RunLog?
        if let checkpoint {
            try checkpoint.restore(into: model.parametersByName())
            try optimizer.load(state: checkpoint.optimizerState, stepCount: checkpoint.step)
            startStep = checkpoint.step
            countedFlops = Int64(checkpoint.metadata["counted_flops"] ?? "0") ?? 0
            window = try LossWindow(serialized: checkpoint.metadata["loss_window"] ?? "", checkpoint: paths.checkpoint)
            progress.say("fusion train: resumed at step \(startStep) from \(paths.checkpoint)")
        }
        if !world.isRoot {
            log = nil
        } else if checkpoint != nil {
            // The log as it was at the checkpoint, whatever a kill did to log.h5 since (older checkpoints
            // carry no copy: then log.h5 is reopened and cut back to the checkpoint's step).
            _ = try RunLog.restore(paths.log, fromCheckpoint: paths.checkpoint)
            do {
                let existing = try ResultsSchema.open(paths.log)  // every run's series and samples checked
                _ = try existing.root.group("runs/\(config.name)")
                try existing.close()
            } catch {
                throw RunFailure(description: "--resume: the log \(paths.log) cannot be continued: \(error)")
            }
            let resumed = try RunLog(resuming: paths.log, runName: config.name, atStep: startStep)
            log = resumed
            if !changes.isEmpty {
                try resumed.recordConfigChanges(atStep: startStep, changes, config: yaml)
                progress.say("fusion train: config changed at step \(startStep) (recorded in the log's config_history): "
                             + changes.map { "\($0.key) \($0.old) → \($0.new)" }.joined(separator: ", "))
            }
        } else {
            let fresh = try RunLog(path: paths.log, runName: config.name, config: yaml, seed: config.seed, recipe: model.config.recipe,
                             attributes: ["parameter_count": Int64(model.parameterCount),
                                          "non_embedding_parameter_count": Int64(nonEmbedding),
                                          "tokens_per_step": Int64(tokensPerStep)],
                             strings: ["autoencoder": data.autoencoderPath, "autoencoder_sha256": data.autoencoderSHA256,
                                       "image_metrics": coverage.description].merging(
                                           data.visionEncoderSHA256.map { ["vision_encoder": config.autoencoder.vision, "vision_encoder_sha256": $0] } ?? [:]) { a, _ in a },
                             overwrite: overwrite || resume)
            try reference.record(in: fresh.run)
            log = fresh
        }
        progress.say("fusion train: \(model.config.recipe), \(model.parameterCount) parameters (\(nonEmbedding) non-embedding), "
                     + "\(config.train.steps) steps of \(config.train.batchSize)×\(model.config.model.contextLength) positions"
                     + (world.size > 1 ? ", data-parallel over \(world.size) ranks of \(rows.count) rows and \(Parallel.threadCount) thread\(Parallel.threadCount == 1 ? "" : "s") each" : ""))
        // Every rank has read the checkpoint before rank 0 may write the next one.
        _ = world.sum([0])

        var lastCheckpointStep = startStep
        /// Parameters, optimiser state, the loss window and the log of step `done`, with the tokenizer, in one file.
        func writeCheckpoint(step done: Int) throws {
            guard let log else { lastCheckpointStep = done; return }  // rank 0 writes it
            if let name = nonFiniteParameterNames(parameters).first {
                throw RunFailure(description: "step \(done): parameter \(name) is not finite; the checkpoint of step \(lastCheckpointStep) is kept. "
                                 + divergenceAdvice(config, resumeCommand, checkpointStep: lastCheckpointStep))
            }
            try log.flush()
            // No generator state is saved: the data and the objective's randomness are functions of (seed, step).
            let checkpoint = Checkpoint(step: done, tensors: model.parametersByName(), optimizerState: optimizer.state,
                                        metadata: ["config": yaml, "counted_flops": String(countedFlops), "recipe": model.config.recipe,
                                                   "loss_window": window.serialized])
            try checkpoint.write(to: paths.checkpoint, overwrite: true) { root in
                // The tokenizer is saved with the model, so the run can be sampled without the cache.
                try data.tokenizer.write(to: try root.createGroup("tokenizer"))
                try log.snapshot(into: root)
            }
            lastCheckpointStep = done
        }

        Interruption.install()
        defer { Interruption.uninstall() }
        progress.beginTraining(at: startStep)
        var lastMetrics: [(String, Double)] = []
        for step in startStep..<config.train.steps {
            if let signal = agreedInterruption(world) {
                // `step` steps are done: save them unless the last checkpoint already holds them.
                if step != lastCheckpointStep { try writeCheckpoint(step: step) }
                try log?.flush()
                progress.say("fusion train: interrupted by \(Interruption.name(signal)) at step \(step)"
                             + (lastCheckpointStep == step && step > 0 ? " (checkpoint written)" : ""))
                throw Interrupted(signal: signal, description: "interrupted at step \(step); resume with: \(resumeCommand.resuming)")
            }
            let started = Date()
            let documents = stream.documents(step: step)
            let batch = try model.layout.pack(documents, length: model.config.model.contextLength, rows: config.train.batchSize)
            var g = lossGenerator.stream(step)
            model.zeroGrad()
            FlopCounter.reset()
            let share = model.loss(batch, rows: rows, generator: &g)
            let loss = world.size == 1 ? share : share.summed(over: world)
            let value = loss.total.item
            guard value.isFinite else {
                try log?.flush()
                throw RunFailure(description: "step \(step): the loss is \(value) (parts \(loss.parts.map { "\($0.name) \($0.value)" }.joined(separator: ", "))). "
                                 + divergenceAdvice(config, resumeCommand, checkpointStep: lastCheckpointStep))
            }
            share.total.backward()
            let frozen = plan.frozen(at: step)
            for (name, tensor) in parameters where frozen.contains(name) { tensor.zeroGrad() }  // not summed, clipped or stepped
            gradients.sum(parameters.map(\.tensor))
            let norm = clipGradientNorm(parameters.map(\.tensor), maxNorm: config.train.gradientClip)
            guard norm.isFinite else {
                try log?.flush()
                throw RunFailure(description: "step \(step): the gradient norm is \(norm) (non-finite in \(nonFiniteGradientNames(parameters).prefix(5).joined(separator: ", "))). "
                                 + divergenceAdvice(config, resumeCommand, checkpointStep: lastCheckpointStep))
            }
            optimizer.learningRate = plan.learningRate(at: step)
            optimizer.step(freezing: frozen)
            countedFlops += FlopCounter.total
            let stepSeconds = Date().timeIntervalSince(started)
            times.add("training", seconds: stepSeconds)
            window.add(loss, norm: norm, seconds: stepSeconds, tokens: tokensPerStep)
            let imageDocuments = documents.filter(\.hasImage)
            window.add("image_documents", Double(imageDocuments.count))
            window.add("caption_first_image_documents", Double(imageDocuments.filter { !$0.imageComesFirst(ignoring: specialIDs) }.count))
            FaultInjection.reach("train.step")

            let done = step + 1
            if done % config.train.logEvery == 0 || done == config.train.steps {
                var values = window.means()
                if plan.isStaged { values.append(("stage", Double(plan.stage(at: step).index + 1))) }
                values += [("learning_rate", Double(optimizer.learningRate)), ("tokens_per_second", window.tokensPerSecond),
                           ("flops_counted", Double(countedFlops)), ("flops_6nd", 6 * Double(nonEmbedding) * Double(done * tokensPerStep))]
                try log?.append("train", step: done, values)
                FaultInjection.reach("log.appended")
                progress.update(step: done, values: values, tokensPerSecond: window.tokensPerSecond)
                window = LossWindow()
            }
            if done % config.train.evalEvery == 0 || done == config.train.steps {
                let evaluation = Evaluation(model: model, data: data, config: resolved, progress: progress, metrics: ImageMetrics(reference),
                                            times: times)
                lastMetrics = try evaluation.run(step: done, log: log, samplesPath: paths.samples(step: done))
                FaultInjection.reach("eval.done")
                try log?.append("eval", step: done, lastMetrics + [("flops_counted", Double(countedFlops))])
                try log?.append("time", step: done, times.takeRow())
                try log?.flush()
                progress.say("eval @\(done): " + lastMetrics.map { "\($0.0) \(String(format: "%.4g", $0.1))" }.joined(separator: ", "))
            }
            if done % config.train.checkpointEvery == 0 || done == config.train.steps {
                try times.measure("checkpoints") { try writeCheckpoint(step: done) }
            }
            if let stopAfterStep, done == stopAfterStep {
                progress.say("fusion train: stopped after step \(done) as asked (--stop-after-step); continue with --resume")
                return lastMetrics
            }
        }
        if startStep >= config.train.steps {
            // Killed after its last checkpoint but before the finished mark: write the checkpoint again, so
            // that one from a build that added the tokenizer after the rename is made whole, then finish.
            try writeCheckpoint(step: startStep)
            lastMetrics = try log?.lastEvaluation() ?? []
        }
        try log?.flush()
        if world.size > 1 && config.train.steps > startStep {
            progress.say(String(format: "fusion train: gradient allreduce %.2f s, %.1f%% of the %d steps' time on rank 0",
                                gradients.seconds, 100 * gradients.seconds / max(progress.trainingSeconds, 1e-9), config.train.steps - startStep))
        }
        progress.finish()
        FaultInjection.reach("finishing")
        guard world.isRoot else { return lastMetrics }
        let summary = lastMetrics.map { "\($0.0): \($0.1)" }.joined(separator: "\n")
        try summary.write(toFile: paths.finished, atomically: true, encoding: .utf8)
        return lastMetrics
    }

    /// The signal that stops the run, once any rank has caught one: every rank then stops at the same
    /// step (a rank that stopped alone would leave the others waiting in the next allreduce).
    private static func agreedInterruption(_ world: Communicator) -> Int32? {
        guard world.size > 1 else { return Interruption.pending }
        let signal = world.maximum([Double(Interruption.pending ?? 0)])[0]
        return signal > 0 ? Int32(signal) : nil
    }

    /// The rank counts that split `batch` rows evenly, for the message that refuses another.
    private static func divisors(of batch: Int) -> [Int] { (1...max(batch, 1)).filter { batch % $0 == 0 } }

    /// What to do after a divergence, with the command that does it.
    private static func divergenceAdvice(_ config: ExperimentConfig, _ command: ResumeCommand, checkpointStep: Int) -> String {
        let lower = config.train.learningRate / 3
        let from = checkpointStep > 0 ? "from the last checkpoint (step \(checkpointStep), kept)" : "from step 0 (no checkpoint was written yet)"
        return "Lower train.learning_rate (or raise train.warmup_steps) and continue \(from): "
            + command.resuming(with: ["train.learning_rate=\(lower)"], allowing: ["train.learning_rate"])
    }

    /// The metrics a finished run's mark lists ("name: value" lines).
    private static func finishedMetrics(_ paths: Paths) -> [(String, Double)] {
        let text = (try? String(contentsOfFile: paths.finished, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let value = Double(parts[1].trimmingCharacters(in: .whitespaces)) else { return nil }
            return (String(parts[0]), value)
        }
    }
}

extension ExperimentRun {
    /// FLOPs of one training step of `config`'s model per sequence position, counted by the operations
    /// themselves on the run's first batch (forward and backward, no optimiser), beside the 6·N
    /// estimate of the papers (N non-embedding parameters). Nothing is trained.
    static func flopsPerPosition(_ config: ExperimentConfig) throws -> (parameters: Int, nonEmbedding: Int, counted: Double, estimate: Double) {
        let data = try MultimodalData(config: config, log: { print($0) })
        let recipe = data.imageGeometry(of: config.recipe)
        var generator = RandomGenerator(seed: config.seed).split(key: "init")
        let model = try FusionModel(config: recipe, vocabulary: data.vocabulary, visionEncoder: data.visionEncoder, generator: &generator)
        let stream = DocumentStream(data: data, model: model, config: config)
        let batch = try model.layout.pack(stream.documents(step: 0), length: recipe.model.contextLength, rows: config.train.batchSize)
        var objective = RandomGenerator(seed: config.seed).split(key: "objective").stream(0)
        let flops = FlopCounter.measure {
            model.zeroGrad()
            model.loss(batch, generator: &objective).total.backward()
        }
        let positions = Double(batch.rows * batch.length)
        let nonEmbedding = recipe.nonEmbeddingParameterCount
        return (model.parameterCount, nonEmbedding, Double(flops) / positions, 6 * Double(nonEmbedding))
    }
}

/// Means of the losses and rates over the steps since the last log row.
struct LossWindow {
    var sums: [String: Double] = [:], order: [String] = []
    var steps = 0, seconds = 0.0, tokens = 0

    mutating func add(_ loss: RecipeLoss, norm: Float, seconds: Double, tokens: Int) {
        add("loss", Double(loss.total.item))
        for part in loss.parts { add(part.name, Double(part.value)) }
        add("grad_norm", Double(norm))
        steps += 1
        self.seconds += seconds
        self.tokens += tokens
    }

    /// Adds a value summed over the window's steps (call once a step, after `add(_:norm:seconds:tokens:)`).
    mutating func add(_ name: String, _ value: Double) {
        if sums[name] == nil { order.append(name) }
        sums[name, default: 0] += value
    }

    /// The mean of each value over the window's steps, and the share of image documents whose image
    /// follows its caption (where the image's loss is conditioned on a caption: the rest are image first,
    /// or had their caption dropped), a ratio of the window's sums.
    func means() -> [(String, Double)] {
        var values = order.map { ($0, sums[$0]! / Double(max(steps, 1))) }
        if let images = sums["image_documents"], images > 0, let captionFirst = sums["caption_first_image_documents"] {
            values.append(("image_conditioned_share", captionFirst / images))
        }
        return values
    }
    var tokensPerSecond: Double { Double(tokens) / max(seconds, 1e-9) }

    init() {}

    /// The window as text for a checkpoint's metadata, exact (Swift writes the shortest decimal that reads
    /// back to the same Double): a run interrupted between log rows resumes with the steps it had summed.
    var serialized: String {
        (["steps \(steps)", "seconds \(seconds)", "tokens \(tokens)"] + order.map { "sum \($0) \(sums[$0]!)" }).joined(separator: "\n")
    }

    /// Reads `serialized` back; "" (a checkpoint taken on a log row, or by an older build) is the empty window.
    init(serialized text: String, checkpoint: String) throws {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            func bad() -> RunFailure {
                RunFailure(description: "\(checkpoint): its loss_window metadata has a malformed line '\(line)'; the file is damaged: "
                           + "resume from an intact checkpoint or train the run again with --overwrite")
            }
            switch (fields.first, fields.count) {
            case ("steps"?, 2): guard let n = Int(fields[1]), n >= 0 else { throw bad() }; steps = n
            case ("seconds"?, 2): guard let x = Double(fields[1]) else { throw bad() }; seconds = x
            case ("tokens"?, 2): guard let n = Int(fields[1]), n >= 0 else { throw bad() }; tokens = n
            case ("sum"?, 3):
                guard let x = Double(fields[2]), sums[String(fields[1])] == nil else { throw bad() }
                order.append(String(fields[1]))
                sums[String(fields[1])] = x
            default: throw bad()
            }
        }
    }
}

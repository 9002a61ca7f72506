// Training and evaluating the reference classifier on Fashion-MNIST (the committed one), or on a
// labelled folder of your own images (`--images`): the model whose features the FID proxy uses. AdamW with warm-up + cosine schedule, gradient
// clipping, a seeded shuffle, an HDF5 log flushed at each evaluation, a checkpoint, the weights alone
// (classifier.h5, the file results/reference/ commits) and a PNG grid.
import Foundation
import Fusion

/// The reference classifier's training configuration (`fusion reference train --config FILE key=value…`).
struct ReferenceTrainingConfig: Configuration, Equatable {
    var epochs = 6            // passes over the 60,000 training images (3 reached 89.8 % test accuracy, short of DESIGN's 90 %)
    var batchSize = 128       // images per step
    var learningRate = 2e-3   // AdamW peak, after linear warm-up, then cosine to a tenth of it
    var warmupSteps = 200
    var weightDecay = 0.05    // decoupled (AdamW)
    var gradientClip = 1.0    // global L2 norm
    var seed: UInt64 = 0      // every random stream (init, data order) is split from it
    var logEvery = 50         // steps between train/ log rows

    enum CodingKeys: String, CodingKey {
        case epochs, batchSize = "batch_size", learningRate = "learning_rate", warmupSteps = "warmup_steps"
        case weightDecay = "weight_decay", gradientClip = "gradient_clip", seed, logEvery = "log_every"
    }

    init() {}

    func validate() throws {
        try require(epochs >= 1, "epochs", epochs, "must be at least 1")
        try require((1...60_000).contains(batchSize), "batch_size", batchSize, "must be between 1 and 60000 (the training set)")
        try require(learningRate > 0 && learningRate.isFinite, "learning_rate", learningRate, "must be a positive number")
        try require(warmupSteps >= 0, "warmup_steps", warmupSteps, "must be 0 or more")
        try require(weightDecay >= 0 && weightDecay.isFinite, "weight_decay", weightDecay, "must be 0 or more")
        try require(gradientClip > 0 && gradientClip.isFinite, "gradient_clip", gradientClip, "must be a positive number")
        try require(logEvery >= 1, "log_every", logEvery, "must be at least 1")
    }

    /// The resolved configuration as YAML text (printed at the start and stored in the log).
    var yaml: String {
        // Encoding a struct of numbers cannot fail; the message is for the day a field makes it possible.
        do { return try ConfigLoader.yaml(self) } catch { preconditionFailure("ReferenceTrainingConfig does not encode: \(error)") }
    }
}

struct TrainingFailure: Error, CustomStringConvertible { let description: String }

enum ReferenceTraining {
    /// Trains, evaluates after each epoch, and writes log.h5, checkpoint.h5 and test-images.png into
    /// `directory`. Returns the final test accuracy.
    @discardableResult
    static func run(_ config: ReferenceTrainingConfig, directory: String, overwrite: Bool,
                    images: ReferenceImages = ReferenceImages()) throws -> Double {
        let logPath = "\(directory)/log.h5", checkpointPath = "\(directory)/checkpoint.h5"
        let gridPath = "\(directory)/test-images.png", weightsPath = "\(directory)/classifier.h5"
        if !overwrite {
            for path in [logPath, checkpointPath, gridPath, weightsPath] where FileManager.default.fileExists(atPath: path) {
                throw TrainingFailure(description: "\(path) exists already: choose another --out directory, or pass --overwrite to replace the run")
            }
        }
        print("reference classifier: resolved config\n\(config.yaml)\n")
        let (train, test, trainLabels, testLabels, classCount) = try images.load()
        let stepsPerEpoch = train.count / config.batchSize
        guard stepsPerEpoch >= 1 else {
            throw TrainingFailure(description: "batch_size \(config.batchSize) exceeds the \(train.count) training images; set batch_size=\(max(train.count / 4, 1))")
        }

        let generator = RandomGenerator(seed: config.seed)
        var initGenerator = generator.split(key: "init")
        var dataGenerator = generator.split(key: "data")
        let model = ReferenceClassifier(channels: train.channels, classCount: classCount, generator: &initGenerator)
        let parameters = model.namedParameters()
        let learningRate = Float(config.learningRate)
        let optimizer = AdamW(parameters: parameters, learningRate: learningRate, weightDecay: Float(config.weightDecay))
        let totalSteps = stepsPerEpoch * config.epochs
        let schedule = WarmupCosineSchedule(peak: learningRate, warmupSteps: min(config.warmupSteps, totalSteps),
                                            totalSteps: totalSteps, floor: learningRate / 10)
        let log = try RunLog(path: logPath, runName: "reference", config: config.yaml, seed: config.seed,
                             recipe: "reference-classifier",
                             attributes: ["parameter_count": Int64(model.parameterCount)], overwrite: overwrite)
        print("reference classifier: \(model.parameterCount) parameters, \(totalSteps) steps of \(config.batchSize) images")

        let side = train.side, imageSize = train.channels * side * side
        let batch = Tensor(uninitializedShape: [config.batchSize, train.channels, side, side])
        var labels = [Int32](repeating: 0, count: config.batchSize)
        var step = 0, windowLoss = 0.0, windowCorrect = 0, windowCount = 0
        var windowStart = Date()
        FlopCounter.reset()
        let started = Date()
        for epoch in 0..<config.epochs {
            let order = dataGenerator.permutation(train.count)
            for batchIndex in 0..<stepsPerEpoch {
                for i in 0..<config.batchSize {
                    let n = order[batchIndex * config.batchSize + i]
                    (batch.data + i * imageSize).update(from: train.images.data + n * imageSize, count: imageSize)
                    labels[i] = trainLabels[n]
                }
                optimizer.learningRate = schedule.rate(at: step)
                let logits = model(batch)
                let loss = crossEntropy(logits, targets: labels)
                guard loss.item.isFinite else {
                    throw TrainingFailure(description: "loss became \(loss.item) at step \(step) (epoch \(epoch)); lower learning_rate (now \(config.learningRate)) or gradient_clip")
                }
                loss.backward()
                let norm = clipGradientNorm(model.parameters, maxNorm: Float(config.gradientClip))
                guard norm.isFinite else {
                    throw NonFiniteGradientError(step: step, norm: norm, parameters: nonFiniteGradientNames(parameters))
                }
                optimizer.step()
                model.zeroGrad()

                windowLoss += Double(loss.item)
                windowCorrect += correctPredictions(logits, labels)
                windowCount += 1
                step += 1
                if step % config.logEvery == 0 || step == totalSteps {
                    let seconds = Date().timeIntervalSince(windowStart)
                    let imagesPerSecond = Double(windowCount * config.batchSize) / seconds
                    try log.append("train", step: step, [
                        ("loss", windowLoss / Double(windowCount)),
                        ("accuracy", Double(windowCorrect) / Double(windowCount * config.batchSize)),
                        ("learning_rate", Double(optimizer.learningRate)),
                        ("gradient_norm", Double(norm)),
                        ("images_per_second", imagesPerSecond),
                        ("flops", Double(FlopCounter.total)),
                    ])
                    print(String(format: "step %5d/%d  epoch %d  loss %.4f  train acc %.3f  lr %.2e  %.0f images/s",
                                 step, totalSteps, epoch + 1, windowLoss / Double(windowCount),
                                 Double(windowCorrect) / Double(windowCount * config.batchSize),
                                 optimizer.learningRate, imagesPerSecond))
                    windowLoss = 0; windowCorrect = 0; windowCount = 0; windowStart = Date()
                }
            }
            let accuracy = evaluate(model, on: test, labels: testLabels)
            try log.append("eval", step: step, [("test_accuracy", accuracy), ("test_count", Double(test.count))])
            try log.flush()
            print(String(format: "epoch %d: test accuracy %.4f on %d images", epoch + 1, accuracy, test.count))
        }
        let accuracy = evaluate(model, on: test, labels: testLabels)
        let wall = Date().timeIntervalSince(started)
        try log.run.setAttribute("final_test_accuracy", accuracy)
        try log.run.setAttribute("wall_seconds", wall)
        try log.run.setAttribute("counted_flops", Double(FlopCounter.total))

        // Samples: the first 64 test images, with their predicted classes beside them.
        let shown = min(64, test.count)
        let sample = test.images.narrow(axis: 0, start: 0, length: shown)
        let predicted = withoutGradients { argmaxRows(model(sample)) }
        let samples = try log.run.createGroup("samples")
        try samples.createDataset("test_images", values: (0..<sample.count).map { UInt8(min(255, max(0, sample.data[$0] * 255)).rounded()) },
                                  shape: train.channels == 1 ? [shown, side, side] : [shown, train.channels, side, side])
        try samples.createDataset("predicted_class", values: predicted, shape: [shown])
        try log.flush()
        try PNG.writeGrid(sample, columns: 8, to: gridPath, overwrite: overwrite)

        var checkpoint = Checkpoint(step: step, tensors: model.parametersByName(), optimizerState: optimizer.state,
                                    rngState: dataGenerator.state, metadata: ["config": config.yaml, "model": "reference-classifier"])
        checkpoint.metadata["test_accuracy"] = String(accuracy)
        try checkpoint.write(to: checkpointPath, overwrite: overwrite)
        try model.writeWeights(to: weightsPath, metadata: [
            "config": config.yaml, "seed": String(config.seed), "step": String(step),
            "test_accuracy": String(accuracy), "test_count": String(test.count),
            "wall_seconds": String(format: "%.1f", wall), "git_commit": Provenance.gitCommit,
            "metric_name": images.metricName, "class_names": images.classNames.joined(separator: "\n"), "images": images.source,
        ], overwrite: overwrite)
        print(String(format: "reference classifier: test accuracy %.4f after %d steps, %.0f s, %.1f GFLOP counted (%.1f GFLOP/s)",
                     accuracy, step, wall, Double(FlopCounter.total) / 1e9, Double(FlopCounter.total) / 1e9 / wall))
        print("wrote \(logPath), \(checkpointPath), \(weightsPath) (sha256 \(try SHA256.hexDigest(ofFile: weightsPath))), \(gridPath)")
        print("first predictions: " + predicted.prefix(8).map { images.classNames.indices.contains(Int($0)) ? images.classNames[Int($0)] : "class \($0)" }
            .joined(separator: ", "))
        if images.manifest != nil {
            print("measure runs with it: data.reference=\(weightsPath) (their metrics: fd_\(images.metricName), kid_\(images.metricName)"
                  + (images.classNames.isEmpty ? ")" : ", and t2i_accuracy where data.classes lists the same classes)"))
        }
        return accuracy
    }

    /// Share of `set` the model classifies correctly (in batches, without recording the graph).
    static func evaluate(_ model: ReferenceClassifier, on set: ImageDataset, labels: [Int32], batchSize: Int = 500) -> Double {
        withoutGradients {
            var correct = 0
            var start = 0
            while start < set.count {
                let n = min(batchSize, set.count - start)
                let logits = model(set.images.narrow(axis: 0, start: start, length: n))
                correct += correctPredictions(logits, Array(labels[start..<(start + n)]))
                start += n
            }
            return Double(correct) / Double(set.count)
        }
    }

    static func argmaxRows(_ logits: Tensor) -> [Int32] {
        let classes = logits.shape[1]
        return (0..<logits.shape[0]).map { row in
            var best = 0
            for c in 1..<classes where logits.data[row * classes + c] > logits.data[row * classes + best] { best = c }
            return Int32(best)
        }
    }

    static func correctPredictions(_ logits: Tensor, _ labels: [Int32]) -> Int {
        zip(argmaxRows(logits), labels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
    }
}

/// The images a reference classifier learns from: Fashion-MNIST (the committed classifier's), or a
/// labelled manifest of your own, read at `channels` channels and split as a run splits it.
struct ReferenceImages {
    var fashionMNISTDirectory = FashionMNIST.directory
    /// A JSONL manifest (ImageFolder) whose records all have labels; nil: Fashion-MNIST.
    var manifest: String? = nil
    var channels = 1
    /// The classes' names in label order (Fashion-MNIST's for Fashion-MNIST; may be empty for a folder).
    var classNames = FashionMNIST.classNames
    /// What its metrics are called: fd_NAME, kid_NAME.
    var metricName = "fmnist"

    var source: String { manifest ?? "fashion-mnist" }

    func load() throws -> (train: ImageDataset, test: ImageDataset, trainLabels: [Int32], testLabels: [Int32], classCount: Int) {
        let images = ImageSource(manifest: manifest, fashionMNISTDirectory: fashionMNISTDirectory,
                                 classCount: classNames.isEmpty ? nil : classNames.count)
        let (train, test, _) = try images.load(side: ReferenceClassifier.side, channels: channels)
        guard let trainLabels = train.labels, let testLabels = test.labels else {
            throw TrainingFailure(description: "\(source): its records have no \"label\"; a reference classifier learns from labelled images")
        }
        let classCount = classNames.isEmpty ? Int((trainLabels + testLabels).max()!) + 1 : classNames.count
        guard classCount <= 10_000 else {
            throw TrainingFailure(description: "\(source): the largest label is \(classCount - 1); number the classes 0…K−1 and name them with --classes")
        }
        guard classCount >= 2 else {
            throw TrainingFailure(description: "\(source): every label is 0; a classifier needs at least 2 classes")
        }
        return (train, test, trainLabels, testLabels, classCount)
    }
}

// Training and evaluating an image autoencoder (ConvAutoencoder, one of the vq / lfq / kl bottlenecks)
// on Fashion-MNIST: AdamW with warm-up + cosine schedule, gradient clipping, a seeded shuffle, an HDF5
// log (train/ rows every logEvery steps, eval/ at the end), the weights, and a PNG of test originals
// above their reconstructions. The measurements (DESIGN.md): test-set MSE and PSNR, for vq / lfq the
// share of the codebook used on the test set and the code perplexity, wall time, tokens per image.
import Foundation
import Fusion

/// The test-set measurements of one autoencoder.
struct AutoencoderMetrics {
    var kind: AutoencoderConfig.Kind
    var imageCount = 0
    var mse = 0.0
    /// 10·log10(1 / MSE), pixel values in [0, 1], from the set's mean squared error.
    var psnr = 0.0
    /// Share of the codebook that at least one test position uses (vq, lfq).
    var codebookUsage: Double?
    /// exp(entropy of the test-set code histogram), in codes (vq, lfq).
    var codePerplexity: Double?
    var tokensPerImage = 0

    var values: [(String, Double)] {
        var result = [("test_mse", mse), ("test_psnr", psnr), ("test_count", Double(imageCount)),
                      ("tokens_per_image", Double(tokensPerImage))]
        if let codebookUsage { result.append(("codebook_usage", codebookUsage)) }
        if let codePerplexity { result.append(("code_perplexity", codePerplexity)) }
        return result
    }

    var summary: String {
        var text = String(format: "test MSE %.5f  PSNR %.2f dB", mse, psnr)
        if let codebookUsage, let codePerplexity {
            text += String(format: "  codebook usage %.1f %%  perplexity %.1f", 100 * codebookUsage, codePerplexity)
        }
        return text + "  (\(imageCount) images, \(tokensPerImage) tokens per image)"
    }
}

enum AutoencoderTraining {
    struct Paths {
        let weights: String, log: String, grid: String
        init(_ directory: String, prefix: String = "") {
            weights = "\(directory)/weights.h5"
            log = "\(directory)/\(prefix)log.h5"
            grid = "\(directory)/\(prefix)reconstructions.png"
        }
    }

    /// Trains on the training set, evaluates on the test set, writes weights.h5, log.h5 and
    /// reconstructions.png into `directory`. Returns the test metrics and the training wall time.
    @discardableResult
    static func train(_ config: AutoencoderConfig, directory: String, overwrite: Bool, command: String,
                      images: ImageSource = .fashionMNIST(directory: FashionMNIST.directory)) throws -> (AutoencoderMetrics, Double) {
        let problems = config.problems
        guard problems.isEmpty else {
            throw TrainingFailure(description: "invalid autoencoder configuration: " + problems.joined(separator: "; "))
        }
        let paths = Paths(directory)
        if !overwrite {
            for path in [paths.weights, paths.log, paths.grid] where FileManager.default.fileExists(atPath: path) {
                throw TrainingFailure(description: "\(path) exists already: choose another --out directory, or pass --overwrite to replace the run")
            }
        }
        print("autoencoder (\(config.kind.rawValue)): resolved config\n\(config.json)\n")
        let (train, test, _) = try images.load(side: config.imageSide, channels: config.imageChannels)

        let generator = RandomGenerator(seed: config.seed)
        var initGenerator = generator.split(key: "init")
        var dataGenerator = generator.split(key: "data")
        var bottleneckGenerator = generator.split(key: "bottleneck")  // kl noise, vq restarts
        let model = ConvAutoencoder(config: config, generator: &initGenerator)
        let parameters = model.namedParameters()
        let optimizer = AdamW(parameters: parameters, learningRate: config.learningRate, weightDecay: config.weightDecay)
        let schedule = WarmupCosineSchedule(peak: config.learningRate, warmupSteps: min(config.warmupSteps, config.steps),
                                            totalSteps: config.steps, floor: config.learningRate / 10)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let log = try RunLog(path: paths.log, runName: "autoencoder-\(config.kind.rawValue)", config: config.json,
                             seed: config.seed, recipe: "autoencoder-\(config.kind.rawValue)",
                             attributes: ["parameter_count": Int64(model.parameterCount),
                                          "tokens_per_image": Int64(config.tokensPerImage)],
                             overwrite: overwrite)
        try log.run.setAttribute("command", command)
        print("autoencoder (\(config.kind.rawValue)): \(model.parameterCount) parameters, \(config.steps) steps of "
              + "\(config.batchSize) images, \(config.gridSide)×\(config.gridSide) grid")

        let batch = Tensor(uninitializedShape: [config.batchSize, train.channels, train.side, train.side])
        var shuffled = ShuffledImages(train, generator: &dataGenerator)
        var window: [String: Double] = [:], windowCount = 0, windowCodes = Set<Int32>()
        var windowStart = Date()
        FlopCounter.reset()
        let started = Date()
        for step in 0..<config.steps {
            shuffled.fill(batch, generator: &dataGenerator)
            optimizer.learningRate = schedule.rate(at: step)
            let output = model.forward(batch, training: true, generator: &bottleneckGenerator)
            guard output.loss.item.isFinite else {
                throw TrainingFailure(description: "loss became \(output.loss.item) at step \(step); lower learningRate (now \(config.learningRate)) or gradientClip")
            }
            output.loss.backward()
            let norm = clipGradientNorm(model.parameters, maxNorm: config.gradientClip)
            guard norm.isFinite else {
                throw NonFiniteGradientError(step: step, norm: norm, parameters: nonFiniteGradientNames(parameters))
            }
            optimizer.step()
            model.zeroGrad()

            window["loss", default: 0] += Double(output.loss.item)
            window["reconstruction_mse", default: 0] += Double(output.reconstructionLoss.item)
            for (name, value) in output.terms { window[name, default: 0] += Double(value) }
            windowCodes.formUnion(output.codes)
            windowCount += 1
            if (step + 1) % config.logEvery == 0 || step + 1 == config.steps {
                let seconds = Date().timeIntervalSince(windowStart)
                var row = window.sorted { $0.key < $1.key }.map { ($0.key, $0.value / Double(windowCount)) }
                row.append(("learning_rate", Double(optimizer.learningRate)))
                row.append(("gradient_norm", Double(norm)))
                row.append(("images_per_second", Double(windowCount * config.batchSize) / seconds))
                row.append(("flops", Double(FlopCounter.total)))
                if config.kind != .kl {
                    row.append(("window_codebook_usage", Double(windowCodes.count) / Double(model.codebookSize)))
                }
                try log.append("train", step: step + 1, row)
                let shown = row.filter { ["loss", "reconstruction_mse", "commitment", "kl", "batch_entropy", "window_codebook_usage"].contains($0.0) }
                print(String(format: "step %5d/%d  ", step + 1, config.steps)
                      + shown.map { String(format: "%@ %.4g", $0.0, $0.1) }.joined(separator: "  ")
                      + String(format: "  %.0f images/s", Double(windowCount * config.batchSize) / seconds))
                window = [:]; windowCount = 0; windowCodes = []; windowStart = Date()
            }
        }
        let trainingSeconds = Date().timeIntervalSince(started)
        let trainingFlops = Double(FlopCounter.total)
        if config.kind == .kl {
            let count = min(config.scaleSampleCount, train.count)
            model.measureLatentScale(on: train.images.narrow(axis: 0, start: 0, length: count))
            print(String(format: "latent scale s = %.4f (1 / std of posterior means over %d training images)", model.latentScale, count))
            try log.run.setAttribute("latent_scale", Double(model.latentScale))
        }
        try model.save(to: paths.weights, overwrite: overwrite, metadata: ["command": command])

        let metrics = evaluate(model, on: test)
        try log.append("eval", step: config.steps, metrics.values)
        for (name, value) in metrics.values { try log.run.setAttribute("final_" + name, value) }
        try log.run.setAttribute("training_wall_seconds", trainingSeconds)
        try log.run.setAttribute("training_counted_flops", trainingFlops)
        try log.run.setAttribute("restarted_codes", Int64(model.restartedCodes))
        try writeSamples(model, test: test, log: log, grid: paths.grid, overwrite: overwrite)
        try log.flush()
        print(String(format: "autoencoder (%@): %@; trained %d steps in %.0f s (%.1f GFLOP counted)",
                     config.kind.rawValue, metrics.summary, config.steps, trainingSeconds, trainingFlops / 1e9))
        print("wrote \(paths.weights), \(paths.log), \(paths.grid)")
        return (metrics, trainingSeconds)
    }

    /// Loads weights, evaluates them on the test set, writes eval-log.h5 and eval-reconstructions.png
    /// into `directory`.
    @discardableResult
    static func evaluate(weights: String, kind: AutoencoderConfig.Kind?, directory: String, overwrite: Bool,
                         command: String, images: ImageSource = .fashionMNIST(directory: FashionMNIST.directory)) throws -> AutoencoderMetrics {
        let paths = Paths(directory, prefix: "eval-")
        if !overwrite {
            for path in [paths.log, paths.grid] where FileManager.default.fileExists(atPath: path) {
                throw TrainingFailure(description: "\(path) exists already: choose another --out directory, or pass --overwrite to replace it")
            }
        }
        let model = try ConvAutoencoder.load(from: weights, expecting: kind)
        let test = try images.load(side: model.config.imageSide, channels: model.config.imageChannels).test
        let started = Date()
        let metrics = evaluate(model, on: test)
        let log = try RunLog(path: paths.log, runName: "autoencoder-\(model.config.kind.rawValue)-eval", config: model.config.json,
                             seed: model.config.seed, recipe: "autoencoder-\(model.config.kind.rawValue)",
                             attributes: ["parameter_count": Int64(model.parameterCount)], overwrite: overwrite)
        try log.run.setAttribute("command", command)
        try log.run.setAttribute("weights", weights)
        try log.append("eval", step: model.config.steps, metrics.values)
        for (name, value) in metrics.values { try log.run.setAttribute("final_" + name, value) }
        try log.run.setAttribute("eval_wall_seconds", Date().timeIntervalSince(started))
        try writeSamples(model, test: test, log: log, grid: paths.grid, overwrite: overwrite)
        try log.flush()
        print("autoencoder (\(model.config.kind.rawValue)) \(weights): \(metrics.summary)")
        print("wrote \(paths.log), \(paths.grid)")
        return metrics
    }

    /// Reconstruction error over the whole set (deterministic path) and, for vq / lfq, the code histogram.
    static func evaluate(_ model: ConvAutoencoder, on set: ImageDataset, batchSize: Int = 500) -> AutoencoderMetrics {
        var metrics = AutoencoderMetrics(kind: model.config.kind, imageCount: set.count, tokensPerImage: model.config.tokensPerImage)
        var squaredError = 0.0
        var histogram = [Int](repeating: 0, count: model.config.kind == .kl ? 0 : model.codebookSize)
        var start = 0
        while start < set.count {
            let n = min(batchSize, set.count - start)
            let images = set.images.narrow(axis: 0, start: start, length: n)
            let reconstruction: Tensor
            if model.config.kind == .kl {
                reconstruction = model.decodeLatents(model.encodeToLatents(images))
            } else {
                let codes = model.encodeToCodes(images)
                for row in codes { for code in row { histogram[Int(code)] += 1 } }
                reconstruction = model.decodeCodes(codes)
            }
            for i in 0..<images.count {
                let e = Double(reconstruction.data[i] - images.data[i])
                squaredError += e * e
            }
            start += n
        }
        metrics.mse = squaredError / Double(set.images.count)
        metrics.psnr = 10 * log10(1 / max(metrics.mse, 1e-12))
        if !histogram.isEmpty {
            let total = Double(histogram.reduce(0, +))
            metrics.codebookUsage = Double(histogram.filter { $0 > 0 }.count) / Double(histogram.count)
            var entropy = 0.0
            for count in histogram where count > 0 { let p = Double(count) / total; entropy -= p * log(p) }
            metrics.codePerplexity = exp(entropy)
        }
        return metrics
    }

    /// Up to 32 test images: rows of up to 16 originals, each above a row of their reconstructions; also
    /// stored as uint8 arrays in the log ([N, S, S] for grey images, [N, C, S, S] for colour).
    static func writeSamples(_ model: ConvAutoencoder, test: ImageDataset, log: RunLog, grid: String, overwrite: Bool) throws {
        let columns = min(16, test.count), shown = min(32, test.count) / columns * columns
        let side = test.side, channels = test.channels, imageSize = channels * side * side
        let originals = test.images.narrow(axis: 0, start: 0, length: shown)
        let reconstructions = model.reconstruct(originals)
        let sheet = Tensor(uninitializedShape: [2 * shown, channels, side, side])
        for row in 0..<(shown / columns) {
            for part in 0..<2 {
                let source = part == 0 ? originals : reconstructions
                let destination = sheet.data + (2 * row + part) * columns * imageSize
                destination.update(from: source.data + row * columns * imageSize, count: columns * imageSize)
            }
        }
        try PNG.writeGrid(sheet, columns: columns, to: grid, overwrite: overwrite)
        func bytes(_ t: Tensor) -> [UInt8] { (0..<t.count).map { UInt8(min(255, max(0, t.data[$0] * 255)).rounded()) } }
        let shape = channels == 1 ? [shown, side, side] : [shown, channels, side, side]
        let samples = try log.run.createGroup("samples")
        try samples.createDataset("test_images", values: bytes(originals), shape: shape)
        try samples.createDataset("reconstructions", values: bytes(reconstructions), shape: shape)
    }
}

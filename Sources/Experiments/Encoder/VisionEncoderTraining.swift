// Training the `vit` understanding encoder with SigLIP's sigmoid loss (SigmoidContrastiveModel) and its
// check on the test split: image→caption and caption→image retrieval in groups of 100, and for
// Fashion-MNIST zero-shot classification against the ten class prompts (Radford et al. 2021, §3.1.2).
// AdamW with warm-up + cosine, gradient clipping, a seeded shuffle, an HDF5 log; like the autoencoders,
// a short job that is rerun whole rather than resumed.
import Foundation
import Fusion

/// The text tower's words: id 0 is any word not seen in the training captions.
struct CaptionWords {
    let words: [String]
    private let ids: [String: Int32]

    init(_ words: [String]) {
        self.words = words
        var ids: [String: Int32] = [:]
        for (i, word) in words.enumerated() where i > 0 { ids[word] = Int32(i) }
        self.ids = ids
    }

    /// The words of the first `count` training images' captions (every phrasing), sorted, after "<unknown>".
    init(captionsOf dataset: ImageDataset, count: Int, variants: Int) {
        var found = Set<String>()
        for index in 0..<min(count, dataset.count) {
            for variant in 0..<variants { for word in Captions.words(in: dataset.captionText(index: index, variant: variant)) { found.insert(String(word)) } }
        }
        self.init(["<unknown>"] + found.sorted())
    }

    func encode(_ caption: String) -> [Int32] {
        let encoded = Captions.words(in: caption).map { ids[String($0)] ?? 0 }
        return encoded.isEmpty ? [0] : encoded
    }
}

/// Retrieval and zero-shot accuracy of a contrastive model on a test split.
struct RetrievalMetrics {
    var imageToText = 0.0, textToImage = 0.0
    /// What a model that ranks at random scores on the same groups (captions repeat, so it is above 1/group).
    var chance = 0.0
    /// Share of test images whose most similar class prompt is their class (nil: no class prompts).
    var zeroShot: Double?
    var count = 0

    var values: [(String, Double)] {
        var result = [("retrieval_image_to_text", imageToText), ("retrieval_text_to_image", textToImage),
                      ("retrieval_chance", chance), ("test_count", Double(count))]
        if let zeroShot { result.append(("zero_shot_accuracy", zeroShot)) }
        return result
    }

    var summary: String {
        String(format: "retrieval@1 image→text %.3f, text→image %.3f (chance %.3f)", imageToText, textToImage, chance)
            + (zeroShot.map { String(format: ", zero-shot accuracy %.3f", $0) } ?? "") + " over \(count) test images"
    }

    /// Retrieval@1 within one group of N pairs, from similarities [N, N] (image i against caption j): a
    /// hit when the best caption's text equals image i's own (image→text), or the best image's caption
    /// equals caption j (caption→image). Returns hits and the hits expected of a random ranking.
    static func group(similarity s: [Float], captions: [String]) -> (imageToText: Int, textToImage: Int, chance: Double) {
        let n = captions.count
        precondition(s.count == n * n, "RetrievalMetrics: \(s.count) similarities for \(n) pairs")
        var i2t = 0, t2i = 0, chance = 0.0
        for i in 0..<n {
            let best = (0..<n).max { s[i * n + $0] < s[i * n + $1] }!
            if captions[best] == captions[i] { i2t += 1 }
            chance += Double(captions.filter { $0 == captions[i] }.count) / Double(n)
        }
        for j in 0..<n {
            let best = (0..<n).max { s[$0 * n + j] < s[$1 * n + j] }!
            if captions[best] == captions[j] { t2i += 1 }
        }
        return (i2t, t2i, chance)
    }
}

enum VisionEncoderTraining {
    /// Groups the test split is cut into for retrieval.
    static let groupSize = 100
    /// Caption phrasings sampled in training.
    static let variants = 8

    @discardableResult
    static func train(_ config: VisionEncoderConfig, directory: String, overwrite: Bool, command: String,
                      images: ImageSource) throws -> RetrievalMetrics {
        let weightsPath = "\(directory)/weights.h5", logPath = "\(directory)/log.h5"
        if !overwrite {
            for path in [weightsPath, logPath] where FileManager.default.fileExists(atPath: path) {
                throw TrainingFailure(description: "\(path) exists already: choose another --out directory, or pass --overwrite to replace the run")
            }
        }
        print("encoder (vit): resolved config\n\(config.json)\n")
        let (train, test, _) = try images.load(side: config.imageSide, channels: config.imageChannels)
        guard test.count >= groupSize else {
            throw TrainingFailure(description: "the test split holds \(test.count) images; retrieval is measured in groups of \(groupSize)")
        }
        let vocabulary = CaptionWords(captionsOf: train, count: 5_000, variants: variants)

        let root = RandomGenerator(seed: config.seed)
        var initGenerator = root.split(key: "init"), dataGenerator = root.split(key: "data")
        let model = SigmoidContrastiveModel(config: config, words: vocabulary.words.count, generator: &initGenerator)
        let parameters = model.namedParameters()
        let optimizer = AdamW(parameters: parameters, learningRate: config.learningRate, weightDecay: config.weightDecay)
        let schedule = WarmupCosineSchedule(peak: config.learningRate, warmupSteps: min(config.warmupSteps, config.steps),
                                            totalSteps: config.steps, floor: config.learningRate / 10)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let log = try RunLog(path: logPath, runName: "encoder-vit", config: config.json, seed: config.seed, recipe: "encoder-vit",
                             attributes: ["parameter_count": Int64(model.image.parameterCount),
                                          "text_tower_parameter_count": Int64(model.parameterCount - model.image.parameterCount)],
                             overwrite: overwrite)
        try log.run.setAttribute("command", command)
        print("encoder (vit): \(model.image.parameterCount) image-tower parameters (+\(model.parameterCount - model.image.parameterCount) text tower), "
              + "\(config.steps) steps of \(config.batchSize) pairs, \(config.grid)×\(config.grid) patches, \(vocabulary.words.count) words")

        let batch = Tensor(uninitializedShape: [config.batchSize, train.channels, train.side, train.side])
        var shuffled = ShuffledImages(train, generator: &dataGenerator)
        var windowLoss = 0.0, windowCount = 0, windowStart = Date()
        FlopCounter.reset()
        let started = Date()
        for step in 0..<config.steps {
            var captions: [String] = []
            shuffled.fill(batch, generator: &dataGenerator) { index, generator in
                captions.append(train.captionText(index: index, variant: generator.nextInt(below: variants)))
            }
            let positive = captions.flatMap { a in captions.map { $0 == a } }
            optimizer.learningRate = schedule.rate(at: step)
            let loss = model.loss(batch, captions: captions.map(vocabulary.encode), positive: positive)
            guard loss.item.isFinite else {
                throw TrainingFailure(description: "loss became \(loss.item) at step \(step); lower --learning-rate (now \(config.learningRate))")
            }
            loss.backward()
            let norm = clipGradientNorm(model.parameters, maxNorm: config.gradientClip)
            guard norm.isFinite else { throw NonFiniteGradientError(step: step, norm: norm, parameters: nonFiniteGradientNames(parameters)) }
            optimizer.step()
            model.zeroGrad()
            windowLoss += Double(loss.item); windowCount += 1
            if (step + 1) % config.logEvery == 0 || step + 1 == config.steps {
                let seconds = Date().timeIntervalSince(windowStart)
                let row: [(String, Double)] = [
                    ("loss", windowLoss / Double(windowCount)), ("temperature", Double(model.temperature)),
                    ("logit_bias", Double(model.logitBias)), ("learning_rate", Double(optimizer.learningRate)),
                    ("gradient_norm", Double(norm)), ("pairs_per_second", Double(windowCount * config.batchSize) / seconds),
                    ("flops", Double(FlopCounter.total)),
                ]
                try log.append("train", step: step + 1, row)
                print(String(format: "step %5d/%d  loss %.4f  t %.2f  b %.2f  %.0f pairs/s", step + 1, config.steps,
                             windowLoss / Double(windowCount), model.temperature, model.logitBias, Double(windowCount * config.batchSize) / seconds))
                windowLoss = 0; windowCount = 0; windowStart = Date()
            }
        }
        let trainingSeconds = Date().timeIntervalSince(started), trainingFlops = Double(FlopCounter.total)
        try model.save(to: weightsPath, words: vocabulary.words, overwrite: overwrite, metadata: ["command": command])
        let metrics = evaluate(model, vocabulary: vocabulary, on: test, classPrompts: train.labels != nil && images.isFashionMNIST)
        try log.append("eval", step: config.steps, metrics.values)
        for (name, value) in metrics.values { try log.run.setAttribute("final_" + name, value) }
        try log.run.setAttribute("training_wall_seconds", trainingSeconds)
        try log.run.setAttribute("training_counted_flops", trainingFlops)
        try log.flush()
        print(String(format: "encoder (vit): %@; trained %d steps in %.0f s (%.1f GFLOP counted)",
                     metrics.summary, config.steps, trainingSeconds, trainingFlops / 1e9))
        print("wrote \(weightsPath), \(logPath)")
        return metrics
    }

    /// Retrieval@1 over the test split in groups of `groupSize` (caption phrasing 0), and with
    /// `classPrompts` (Fashion-MNIST's labels) zero-shot classification of every test image.
    static func evaluate(_ model: SigmoidContrastiveModel, vocabulary: CaptionWords, on test: ImageDataset,
                         classPrompts: Bool) -> RetrievalMetrics {
        withoutGradients {
            var metrics = RetrievalMetrics()
            let groups = test.count / groupSize
            var i2t = 0, t2i = 0, chance = 0.0, zeroShotHits = 0
            let prompts = classPrompts ? model.textEmbeddings((0..<Captions.classNames.count).map { vocabulary.encode(Captions.classPrompt(label: $0)) }) : nil
            for g in 0..<groups {
                let images = model.imageEmbeddings(test.images.narrow(axis: 0, start: g * groupSize, length: groupSize))
                let captions = (0..<groupSize).map { test.captionText(index: g * groupSize + $0, variant: 0) }
                let texts = model.textEmbeddings(captions.map(vocabulary.encode))
                let similarity = matmul(images, texts, transposeB: true)
                let hits = RetrievalMetrics.group(similarity: Array(UnsafeBufferPointer(start: similarity.data, count: similarity.count)), captions: captions)
                i2t += hits.imageToText; t2i += hits.textToImage; chance += hits.chance
                if let prompts, let labels = test.labels {
                    let scores = matmul(images, prompts, transposeB: true), k = prompts.shape[0]
                    for i in 0..<groupSize {
                        let best = (0..<k).max { scores.data[i * k + $0] < scores.data[i * k + $1] }!
                        if best == Int(labels[g * groupSize + i]) { zeroShotHits += 1 }
                    }
                }
            }
            let n = Double(groups * groupSize)
            metrics.count = groups * groupSize
            metrics.imageToText = Double(i2t) / n
            metrics.textToImage = Double(t2i) / n
            metrics.chance = chance / n
            if prompts != nil && test.labels != nil { metrics.zeroShot = Double(zeroShotHits) / n }
            return metrics
        }
    }
}

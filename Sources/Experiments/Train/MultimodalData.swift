// The data of an experiment, prepared once per run (and cached across runs): the BPE tokenizer
// trained on the training plays and captions, the tokenized plays (training and held-out), and the
// Fashion-MNIST images with their autoencoder codes or latents (DESIGN.md, "Data").
import Foundation
import Fusion

final class MultimodalData {
    struct ImageSplit {
        /// [N, 1, 32, 32] in [0, 1].
        let images: Tensor
        let labels: [Int32]
        /// N × (h·w) codes (discrete recipes) or latents [N, C, h, w] (Transfusion).
        let codes: [[Int32]]?
        let latents: Tensor?
        var count: Int { labels.count }
    }

    let tokenizer: BPETokenizer
    let vocabulary: Vocabulary
    let autoencoder: ConvAutoencoder
    let autoencoderPath: String
    let autoencoderSHA256: String
    let trainText: [Int32]
    let heldOutText: [Int32]
    let train: ImageSplit
    let test: ImageSplit

    /// Bumped when anything that goes into a cached file changes meaning.
    static let cacheVersion = 1

    /// `tokenizer`: the one saved with a trained model (its checkpoint), instead of the cached or
    /// freshly trained one.
    init(config: ExperimentConfig, tokenizer saved: BPETokenizer? = nil, log: (String) -> Void) throws {
        let usesCodes = config.recipe.imageObjective.usesCodes
        let autoencoderPath = usesCodes ? config.autoencoder.codes : config.autoencoder.latents
        autoencoder = try ConvAutoencoder.load(from: autoencoderPath, expecting: usesCodes ? nil : .kl)
        self.autoencoderPath = autoencoderPath
        autoencoderSHA256 = try SHA256.hexDigest(ofFile: autoencoderPath)
        if usesCodes && autoencoder.config.kind == .kl {
            throw ConfigurationError("autoencoder.codes: \(autoencoderPath) holds a KL autoencoder; recipe '\(config.recipe.recipe)' needs image codes (a vq or lfq autoencoder)")
        }
        let corpus = try ShakespeareCorpus.load()
        let trainSet = try FashionMNIST.load(.train)
        let testSet = try FashionMNIST.load(.test)
        let trainCount = config.data.trainImages == 0 ? trainSet.count : min(config.data.trainImages, trainSet.count)

        // The tokenizer: learned from the training plays (capped) and a sample of captions.
        let cache = config.data.cacheDirectory
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let tokenizerPath = "\(cache)/tokenizer-v\(config.tokenizer.vocabularySize)-c\(config.tokenizer.trainingCharacters)-\(Self.cacheVersion).h5"
        if let saved {
            tokenizer = saved
        } else if FileManager.default.fileExists(atPath: tokenizerPath) {
            let file = try HDF5File.open(tokenizerPath)
            tokenizer = try BPETokenizer.read(from: file.root)
        } else {
            let started = Date()
            var text = corpus.trainingText
            if config.tokenizer.trainingCharacters > 0 && text.count > config.tokenizer.trainingCharacters {
                text = String(text.prefix(config.tokenizer.trainingCharacters))
            }
            var captions: [String] = []
            for index in stride(from: 0, to: trainSet.count, by: 12) {
                captions.append(Self.captionText(trainSet, index: index, variant: index))
            }
            let trained = BPETokenizer.train(texts: [text] + captions, vocabularySize: config.tokenizer.vocabularySize)
            try Self.writeCache(tokenizerPath) { try trained.write(to: $0) }
            tokenizer = trained
            log(String(format: "tokenizer: %d ids trained in %.1f s (cached in %@)", tokenizer.vocabularySize, Date().timeIntervalSince(started), tokenizerPath))
        }
        vocabulary = Vocabulary(textSize: tokenizer.vocabularySize, imageCodes: usesCodes ? autoencoder.codebookSize : 0,
                                bos: tokenizer.id(.bos), eos: tokenizer.id(.eos), pad: tokenizer.id(.pad), boi: tokenizer.id(.boi),
                                eoi: tokenizer.id(.eoi), mask: tokenizer.id(.mask), t2i: tokenizer.id(.t2i), mmu: tokenizer.id(.mmu))
        trainText = tokenizer.encode(corpus.trainingText)
        heldOutText = tokenizer.encode(corpus.heldOutText)

        // Images through the autoencoder, cached per autoencoder file.
        let key = "\(cache)/\(usesCodes ? "codes" : "latents")-\(autoencoderSHA256.prefix(16))-\(Self.cacheVersion)"
        train = try Self.encode(trainSet, count: trainCount, autoencoder: autoencoder, usesCodes: usesCodes,
                                cachePath: "\(key)-train-\(trainCount).h5", log: log)
        // Only the evaluation sets' images of the test split are used: the first N of them.
        let testCount = min(testSet.count, max(config.eval.images, config.eval.captions))
        test = try Self.encode(testSet, count: testCount, autoencoder: autoencoder, usesCodes: usesCodes,
                               cachePath: "\(key)-test-\(testCount).h5", log: log)
    }

    static func captionText(_ set: FashionMNIST.Set, index: Int, variant: Int) -> String {
        let side = set.side
        return Captions.caption(for: set.images.data + index * side * side, side: side, label: Int(set.labels[index]),
                                variant: variant % Captions.variantCount)
    }

    /// Caption `variant` of image `index` of a split (variants beyond the phrasings wrap around).
    func captionText(_ split: ImageSplit, index: Int, variant: Int) -> String {
        let side = split.images.shape[2]
        return withExtendedLifetime(split.images) {
            Captions.caption(for: split.images.data + index * side * side, side: side, label: Int(split.labels[index]),
                             variant: variant % Captions.variantCount)
        }
    }

    func content(_ split: ImageSplit, index: Int) -> ImageContent {
        if let codes = split.codes { return .codes(codes[index]) }
        let latents = split.latents!
        let c = latents.shape[1], h = latents.shape[2], w = latents.shape[3]
        let one = Tensor(uninitializedShape: [c, h, w])
        one.data.update(from: latents.data + index * c * h * w, count: c * h * w)
        return .latents(one)
    }

    private static func encode(_ set: FashionMNIST.Set, count: Int, autoencoder: ConvAutoencoder, usesCodes: Bool,
                               cachePath: String, log: (String) -> Void) throws -> ImageSplit {
        let side = set.side, size = side * side
        let images = Tensor(uninitializedShape: [count, 1, side, side])
        images.data.update(from: set.images.data, count: count * size)
        let labels = Array(set.labels.prefix(count))
        if FileManager.default.fileExists(atPath: cachePath) {
            let file = try HDF5File.open(cachePath)
            let stored = try file.root.dataset("encoded").readTensor()
            guard stored.shape[0] == count else {
                throw ConfigurationError("\(cachePath) holds \(stored.shape[0]) images, expected \(count); delete it to rebuild the cache")
            }
            if usesCodes {
                let perImage = stored.count / count
                let codes = (0..<count).map { n in (0..<perImage).map { Int32(stored.data[n * perImage + $0]) } }
                return ImageSplit(images: images, labels: labels, codes: codes, latents: nil)
            }
            return ImageSplit(images: images, labels: labels, codes: nil, latents: stored)
        }
        let started = Date()
        var codes: [[Int32]] = []
        var latentChunks: [Tensor] = []
        let chunk = 500
        withoutGradients {
            for start in stride(from: 0, to: count, by: chunk) {
                let n = min(chunk, count - start)
                let batch = Tensor(uninitializedShape: [n, 1, side, side])
                batch.data.update(from: images.data + start * size, count: n * size)
                if usesCodes { codes += autoencoder.encodeToCodes(batch) } else { latentChunks.append(autoencoder.encodeToLatents(batch)) }
            }
        }
        let stored: Tensor
        if usesCodes {
            let perImage = codes.first?.count ?? 0
            stored = Tensor(codes.flatMap { $0.map(Float.init) }, shape: [count, perImage])
        } else {
            stored = concatenate(latentChunks, axis: 0)
        }
        try Self.writeCache(cachePath) { try $0.createDataset("encoded", tensor: stored) }
        log(String(format: "autoencoder: %d images encoded in %.1f s (cached in %@)", count, Date().timeIntervalSince(started), cachePath))
        return usesCodes ? ImageSplit(images: images, labels: labels, codes: codes, latents: nil)
            : ImageSplit(images: images, labels: labels, codes: nil, latents: stored)
    }

    /// Writes a cache file whole or not at all: into this process's own temporary file, then renamed
    /// over `path` (rename(2) replaces it atomically). Runs side by side (a sweep, a job array) may build
    /// the same cache at once; each writes the same content, and the last rename wins.
    static func writeCache(_ path: String, _ body: (HDF5Group) throws -> Void) throws {
        let partial = path + ".partial-\(ProcessInfo.processInfo.processIdentifier)"
        do {
            let file = try HDF5File.create(partial, overwrite: true)
            try body(file.root)
            try file.close()
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        guard rename(partial, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: partial)
            throw RunFailure(description: "cannot move the cache file \(partial) to \(path): \(reason); check that the cache directory is writable")
        }
    }
}

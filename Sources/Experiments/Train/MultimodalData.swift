// The data of an experiment, prepared once per run (and cached across runs): the BPE tokenizer
// trained on the training text and captions, the tokenized text (training and held-out), and the
// images with their autoencoder codes or latents (DESIGN.md, "Data"). The images and the text come
// from `data.images` and `data.text`: the built-in Fashion-MNIST and Shakespeare, or your own folders.
import Foundation
import Fusion

final class MultimodalData {
    struct ImageSplit {
        /// The images [N, C, S, S] in [0, 1], their labels (if any) and captions.
        let dataset: ImageDataset
        /// N × (h·w) codes (discrete recipes) or latents [N, C, h, w] (Transfusion).
        let codes: [[Int32]]?
        let latents: Tensor?
        var images: Tensor { dataset.images }
        var labels: [Int32]? { dataset.labels }
        var count: Int { dataset.count }
    }

    let tokenizer: BPETokenizer
    let vocabulary: Vocabulary
    let autoencoder: ConvAutoencoder
    let autoencoderPath: String
    let autoencoderSHA256: String
    /// The ViT of recipe.understanding.encoder: vit (autoencoder.vision), with its file's digest; nil otherwise.
    let visionEncoder: VisionTransformer?
    let visionEncoderSHA256: String?
    let trainText: [Int32]
    let heldOutText: [Int32]
    let train: ImageSplit
    let test: ImageSplit
    /// The names of the label classes (empty: the images have no labels, or their labels no names).
    let classNames: [String]

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
        if config.recipe.understanding.encoder == .vit {
            visionEncoder = try VisionTransformer.load(from: config.autoencoder.vision, trainable: config.recipe.understanding.trainEncoder)
            visionEncoderSHA256 = try SHA256.hexDigest(ofFile: config.autoencoder.vision)
        } else {
            visionEncoder = nil
            visionEncoderSHA256 = nil
        }
        let corpus = try TextCorpus.load(config.data.text)
        let (trainSet, testSet, imagesKey) = try ImageSource(config.data).load(side: autoencoder.config.imageSide,
                                                                                channels: autoencoder.config.imageChannels)
        guard testSet.count >= 4 else {
            throw ConfigurationError("\(config.data.images): the test split holds \(testSet.count) image(s); the image metrics compare at least 4 "
                                     + "(raise data.test_share, or mark more records \"split\": \"test\")")
        }
        classNames = config.data.usesFashionMNIST ? FashionMNIST.classNames : config.data.classes
        if config.data.qaShare > 0 && (trainSet.labels == nil || classNames.isEmpty) {
            throw ConfigurationError("data.qa_share: \(config.data.qaShare) asks questions about the training images, but they have no labels "
                                     + "with names to answer them from; give the manifest's records \"label\" and set data.classes, or set data.qa_share: 0")
        }
        let trainCount = config.data.trainImages == 0 ? trainSet.count : min(config.data.trainImages, trainSet.count)
        let trainImages = trainSet.prefix(trainCount)

        // The tokenizer: learned from the training text (capped) and every 12th training caption,
        // cached under a digest of exactly those texts.
        let cache = config.data.cacheDirectory
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        if let saved {
            tokenizer = saved
        } else {
            var text = corpus.trainingText
            if config.tokenizer.trainingCharacters > 0 && text.count > config.tokenizer.trainingCharacters {
                text = String(text.prefix(config.tokenizer.trainingCharacters))
            }
            let captions = stride(from: 0, to: trainImages.count, by: 12).map { trainImages.captionText(index: $0, variant: $0) }
            var digest = SHA256()
            for piece in [text] + captions { digest.update(piece.utf8); digest.update([0]) }
            let tokenizerPath = "\(cache)/tokenizer-v\(config.tokenizer.vocabularySize)-\(SHA256.hex(digest.finalize()).prefix(16))-\(Self.cacheVersion).h5"
            if FileManager.default.fileExists(atPath: tokenizerPath) {
                let file = try HDF5File.open(tokenizerPath)
                tokenizer = try BPETokenizer.read(from: file.root)
            } else {
                let started = Date()
                let trained = BPETokenizer.train(texts: [text] + captions, vocabularySize: config.tokenizer.vocabularySize)
                try Self.writeCache(tokenizerPath) { try trained.write(to: $0) }
                tokenizer = trained
                log(String(format: "tokenizer: %d ids trained in %.1f s (cached in %@)", tokenizer.vocabularySize, Date().timeIntervalSince(started), tokenizerPath))
            }
        }
        vocabulary = Vocabulary(textSize: tokenizer.vocabularySize, imageCodes: usesCodes ? autoencoder.codebookSize : 0,
                                bos: tokenizer.id(.bos), eos: tokenizer.id(.eos), pad: tokenizer.id(.pad), boi: tokenizer.id(.boi),
                                eoi: tokenizer.id(.eoi), mask: tokenizer.id(.mask), t2i: tokenizer.id(.t2i), mmu: tokenizer.id(.mmu))
        trainText = tokenizer.encode(corpus.trainingText)
        heldOutText = tokenizer.encode(corpus.heldOutText)

        // Images through the autoencoder, cached per autoencoder file and image source.
        let key = "\(cache)/\(usesCodes ? "codes" : "latents")-\(autoencoderSHA256.prefix(16))\(imagesKey)-\(Self.cacheVersion)"
        train = try Self.encode(trainImages, autoencoder: autoencoder, usesCodes: usesCodes,
                                cachePath: "\(key)-train-\(trainCount).h5", log: log)
        // Only the evaluation sets' images of the test split are used: the first N of them.
        let testCount = min(testSet.count, max(config.eval.images, config.eval.captions))
        test = try Self.encode(testSet.prefix(testCount), autoencoder: autoencoder, usesCodes: usesCodes,
                               cachePath: "\(key)-test-\(testCount).h5", log: log)
    }

    /// Caption `variant` of image `index` of a split (variants beyond the phrasings wrap around).
    func captionText(_ split: ImageSplit, index: Int, variant: Int) -> String {
        split.dataset.captionText(index: index, variant: variant)
    }

    /// The class a caption names, if it names exactly one of `classNames` (nil also when there are none).
    /// Fashion-MNIST's names are read with their synonyms (Captions.className); others as whole words.
    func className(in caption: String) -> Int? {
        if classNames == FashionMNIST.classNames { return Captions.className(in: caption) }
        // Whole words: each name, as its words, must appear as a run of the caption's words.
        let padded = " \(Captions.words(in: caption).joined(separator: " ")) "
        let found = classNames.indices.filter { index in
            let name = Captions.words(in: classNames[index]).joined(separator: " ")
            return !name.isEmpty && padded.contains(" \(name) ")
        }
        return found.count == 1 ? found[0] : nil
    }

    /// `recipe` with the image geometry of this data's autoencoder: its latent grid, codebook size or
    /// latent channels, and the pixel side and channels an understanding encoder reads.
    func imageGeometry(of recipe: RecipeConfig) -> RecipeConfig {
        var recipe = recipe
        recipe.imageGrid = autoencoder.gridSide
        if recipe.imageObjective.usesCodes { recipe.imageCodes = autoencoder.codebookSize } else { recipe.latentChannels = autoencoder.latentChannels }
        recipe.understanding.imageSide = autoencoder.config.imageSide
        recipe.understanding.imageChannels = autoencoder.config.imageChannels
        return recipe
    }

    /// What an image→caption document of `model` holds for image `index` of a split: its pixels when
    /// the model has an understanding encoder of its own, else the codes or latents it generates.
    func understandingContent(_ split: ImageSplit, index: Int, model: FusionModel) -> ImageContent {
        guard model.understanding != nil else { return content(split, index: index) }
        return .pixels(Self.item(index, of: split.images))
    }

    /// Item `index` of a stacked tensor [N, …], as a tensor of its own […].
    static func item(_ index: Int, of stacked: Tensor) -> Tensor {
        stacked.narrow(axis: 0, start: index, length: 1).reshaped(Array(stacked.shape.dropFirst()))
    }

    /// The first class `text` names, reading its words in order (a continuation that goes on to name
    /// others after its answer, as an in-context learner may, is scored by its answer).
    func firstClassName(in text: String) -> Int? {
        let words = Captions.words(in: text)
        for end in words.indices {
            if let label = className(in: words[...end].joined(separator: " ")) { return label }
        }
        return nil
    }

    /// The words a label is written with in few-shot prompts: its noun, or its data.classes name.
    func labelText(_ label: Int) -> String {
        classNames == FashionMNIST.classNames ? Captions.nounForms[label][0] : classNames[label]
    }

    /// The templated questions image `index` of a split has answers to (ImageQuestions.swift).
    func questions(_ split: ImageSplit, index: Int) -> [ImageQuestion] {
        ImageQuestion.all(for: split.dataset, index: index, classNames: classNames)
    }

    func content(_ split: ImageSplit, index: Int) -> ImageContent {
        if let codes = split.codes { return .codes(codes[index]) }
        return .latents(Self.item(index, of: split.latents!))
    }

    private static func encode(_ set: ImageDataset, autoencoder: ConvAutoencoder, usesCodes: Bool,
                               cachePath: String, log: (String) -> Void) throws -> ImageSplit {
        let images = set.images, count = set.count
        let size = set.channels * set.side * set.side
        if FileManager.default.fileExists(atPath: cachePath) {
            let file = try HDF5File.open(cachePath)
            let stored = try file.root.dataset("encoded").readTensor()
            guard stored.shape[0] == count else {
                throw ConfigurationError("\(cachePath) holds \(stored.shape[0]) images, expected \(count); delete it to rebuild the cache")
            }
            if usesCodes {
                let perImage = stored.count / count
                let codes = (0..<count).map { n in (0..<perImage).map { Int32(stored.data[n * perImage + $0]) } }
                return ImageSplit(dataset: set, codes: codes, latents: nil)
            }
            return ImageSplit(dataset: set, codes: nil, latents: stored)
        }
        let started = Date()
        var codes: [[Int32]] = []
        var latentChunks: [Tensor] = []
        let chunk = 500
        withoutGradients {
            for start in stride(from: 0, to: count, by: chunk) {
                let n = min(chunk, count - start)
                let batch = Tensor(uninitializedShape: [n, set.channels, set.side, set.side])
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
        return usesCodes ? ImageSplit(dataset: set, codes: codes, latents: nil)
            : ImageSplit(dataset: set, codes: nil, latents: stored)
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

// Where a job's images come from: Fashion-MNIST's IDX files (built in), or a JSONL manifest of your own
// (ImageFolder). Runs (data.images), `fusion autoencoder … --images` and `fusion reference train --images`
// all load through here, so every job reads and splits a folder alike.
import Fusion

enum ImageSource {
    case fashionMNIST(directory: String)
    /// A manifest, with the split settings used when its records name no split, and the number of named
    /// classes its labels must lie below (nil: any label ≥ 0).
    case manifest(path: String, testShare: Float, splitSeed: UInt64, classCount: Int?)

    /// Whether these are Fashion-MNIST's images (whose labels name the ten classes).
    var isFashionMNIST: Bool {
        if case .fashionMNIST = self { return true }
        return false
    }

    /// A run's images: data.images with data.test_share, data.split_seed and data.classes.
    init(_ data: ExperimentConfig.DataConfig) {
        self = data.usesFashionMNIST ? .fashionMNIST(directory: FashionMNIST.directory)
            : .manifest(path: data.images, testShare: data.testShare, splitSeed: data.splitSeed,
                        classCount: data.classes.isEmpty ? nil : data.classes.count)
    }

    /// A command's images: `--images MANIFEST`, split as a run splits it by default, or Fashion-MNIST.
    init(manifest: String?, fashionMNISTDirectory: String, classCount: Int? = nil) {
        let defaults = ExperimentConfig.DataConfig()
        self = manifest.map { .manifest(path: $0, testShare: defaults.testShare, splitSeed: defaults.splitSeed, classCount: classCount) }
            ?? .fashionMNIST(directory: fashionMNISTDirectory)
    }

    /// The training and test images at `side` × `side` and `channels`, and the part of cache names that
    /// tells image sources apart ("" for Fashion-MNIST, whose cache names it keeps).
    func load(side: Int, channels: Int) throws -> (train: ImageDataset, test: ImageDataset, cacheKey: String) {
        switch self {
        case .fashionMNIST(let directory):
            let train = try FashionMNIST.load(.train, directory: directory), test = try FashionMNIST.load(.test, directory: directory)
            guard train.side == side && channels == 1 else {
                throw ConfigurationError("Fashion-MNIST images are 1×\(train.side)×\(train.side) (padding 2), not the \(channels)×\(side)×\(side) "
                                         + "asked for: use an autoencoder (imageChannels 1, imageSide \(train.side)) trained on them, "
                                         + "or your own images (data.images, --images MANIFEST)")
            }
            return (ImageDataset(train), ImageDataset(test), "")
        case .manifest(let path, let testShare, let splitSeed, let classCount):
            let folder = try ImageFolder.load(manifest: path, side: side, channels: channels, testShare: testShare,
                                              splitSeed: splitSeed, classCount: classCount)
            return (folder.train, folder.test, "-images-\(folder.digest.prefix(16))")
        }
    }
}

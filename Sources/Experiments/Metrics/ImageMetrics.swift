// The image measurements of DESIGN.md ("Measurements"), computed with the committed reference
// classifier: `fd_fmnist` (Fréchet distance of its 128-d features, the FID proxy), `kid_fmnist`
// (kernel distance of the same features) and `t2i_accuracy` (share of generated images classified as
// the class in their prompt). Every value carries the N it was computed from: FID is biased at small N
// (Chong & Forsyth 2020, "Effectively Unbiased FID", arXiv 1911.07023), so values are comparable only
// at equal N.
//
// Shapes: images [N, 1, 32, 32] in [0, 1] → features [N, 128], logits [N, 10].
import Fusion

/// The reference classifier's outputs on a set of images.
struct ReferenceOutputs {
    let features: Tensor  // [N, 128]
    let logits: Tensor    // [N, 10]
    var count: Int { features.shape[0] }

    /// The predicted class of each image (the arg-max logit; the first on ties).
    var predictions: [Int32] { ReferenceTraining.argmaxRows(logits) }
}

/// One measured value with its sample sizes, as a run log stores it.
struct MetricValue {
    let name: String        // e.g. "fd_fmnist"
    let value: Double
    let count: Int          // N of the generated (or scored) images
    let referenceCount: Int?  // N of the real images compared against, where there are any
    let standardDeviation: Double?  // across KID subsets

    /// The row for `RunLog.append("eval", …)`: the value, `NAME_n`, and `NAME_reference_n` / `NAME_std`
    /// where they apply.
    var logRow: [(String, Double)] {
        var row = [(name, value), ("\(name)_n", Double(count))]
        if let referenceCount { row.append(("\(name)_reference_n", Double(referenceCount))) }
        if let standardDeviation { row.append(("\(name)_std", standardDeviation)) }
        return row
    }
}

struct ImageMetrics {
    let classifier: ReferenceClassifier
    /// SHA-256 of the weights file, for the log (nil for weights that are not from a file, as in tests).
    let classifierSHA256: String?
    /// Images per forward pass of the classifier.
    var batchSize = 500

    init(classifier: ReferenceClassifier, sha256: String?) {
        self.classifier = classifier
        self.classifierSHA256 = sha256
    }

    init(_ committed: CommittedReference) {
        self.init(classifier: committed.classifier, sha256: committed.sha256)
    }

    /// Features and logits of `images` [N, 1, 32, 32] in [0, 1], in batches, without recording gradients.
    func outputs(_ images: Tensor) throws -> ReferenceOutputs {
        try Self.checkImages(images)
        let n = images.shape[0], width = ReferenceClassifier.featureWidth, classes = ReferenceClassifier.classCount
        let features = Tensor(uninitializedShape: [n, width])
        let logits = Tensor(uninitializedShape: [n, classes])
        withoutGradients {
            var start = 0
            while start < n {
                let length = min(batchSize, n - start)
                let batchFeatures = classifier.features(images.narrow(axis: 0, start: start, length: length))
                let batchLogits = classifier.logits(features: batchFeatures)
                (features.data + start * width).update(from: batchFeatures.data, count: length * width)
                (logits.data + start * classes).update(from: batchLogits.data, count: length * classes)
                start += length
            }
        }
        return ReferenceOutputs(features: features, logits: logits)
    }

    /// `fd_fmnist`: Fréchet distance between the features of generated and real images.
    func fdFMNIST(generated: Tensor, real: Tensor) throws -> MetricValue {
        try fdFMNIST(generated: outputs(generated), real: outputs(real))
    }

    /// `fd_fmnist` from outputs already computed (the real images' can be computed once per evaluation).
    func fdFMNIST(generated: ReferenceOutputs, real: ReferenceOutputs) throws -> MetricValue {
        let value = try FrechetDistance.distance(GaussianStatistics(features: generated.features),
                                                 GaussianStatistics(features: real.features))
        return MetricValue(name: "fd_fmnist", value: value, count: generated.count, referenceCount: real.count,
                           standardDeviation: nil)
    }

    /// `kid_fmnist`: kernel inception distance between the features of generated and real images.
    func kidFMNIST(generated: Tensor, real: Tensor, kid: KernelInceptionDistance = .init()) throws -> MetricValue {
        try kidFMNIST(generated: outputs(generated), real: outputs(real), kid: kid)
    }

    func kidFMNIST(generated: ReferenceOutputs, real: ReferenceOutputs,
                   kid: KernelInceptionDistance = .init()) throws -> MetricValue {
        let estimate = try kid.estimate(generated.features, real.features)
        return MetricValue(name: "kid_fmnist", value: estimate.mean, count: generated.count, referenceCount: real.count,
                           standardDeviation: estimate.standardDeviation)
    }

    /// `t2i_accuracy`: the share of `images` that the classifier assigns to the class in their prompt.
    func t2iAccuracy(images: Tensor, promptedLabels: [Int32]) throws -> MetricValue {
        guard images.rank >= 1, images.shape[0] == promptedLabels.count else {
            throw MetricError(description: "t2i_accuracy: \(images.rank >= 1 ? images.shape[0] : 0) images but \(promptedLabels.count) prompted labels; give one label per image")
        }
        if let bad = promptedLabels.first(where: { $0 < 0 || Int($0) >= ReferenceClassifier.classCount }) {
            throw MetricError(description: "t2i_accuracy: prompted label \(bad) is not a class 0…\(ReferenceClassifier.classCount - 1)")
        }
        let predictions = try outputs(images).predictions
        let correct = zip(predictions, promptedLabels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
        return MetricValue(name: "t2i_accuracy", value: Double(correct) / Double(max(promptedLabels.count, 1)),
                           count: promptedLabels.count, referenceCount: nil, standardDeviation: nil)
    }

    /// Images must be [N, 1, 32, 32], N ≥ 1, finite and within [0, 1] (a decoder's output clamped).
    static func checkImages(_ images: Tensor) throws {
        guard images.rank == 4, images.shape[0] >= 1, images.shape[1] == 1, images.shape[2] == 32, images.shape[3] == 32 else {
            throw MetricError(description: "images of shape \(images.shape); the reference classifier takes [N, 1, 32, 32] with N ≥ 1 (Fashion-MNIST padded by 2)")
        }
        for i in 0..<images.count where !(images.data[i] >= 0 && images.data[i] <= 1) {
            throw MetricError(description: "pixel \(i % 1024) of image \(i / 1024) is \(images.data[i]), outside [0, 1]; clamp the decoder's output to [0, 1] before measuring")
        }
    }
}

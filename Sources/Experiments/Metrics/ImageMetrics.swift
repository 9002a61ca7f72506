// The image measurements of DESIGN.md ("Measurements"), computed with a reference classifier (the
// committed Fashion-MNIST one, or one trained on your labelled images): `fd_NAME` (Fréchet distance of
// its 128-d features, the FID proxy; `fd_fmnist` with the committed classifier), `kid_NAME` (kernel
// distance of the same features) and `t2i_accuracy` (share of generated images classified as the class
// in their prompt). Every value carries the N it was computed from: FID is biased at small N (Chong &
// Forsyth 2020, "Effectively Unbiased FID", arXiv 1911.07023), so values are comparable only at equal N.
//
// Shapes: images [N, C, 32, 32] in [0, 1] → features [N, 128], logits [N, K].
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
    /// The suffix of the distances' names: fd_NAME, kid_NAME.
    let name: String
    /// The classifier's classes by name, in label order (empty: unnamed).
    let classNames: [String]
    /// Images per forward pass of the classifier.
    var batchSize = 500

    init(classifier: ReferenceClassifier, sha256: String?, name: String = "fmnist", classNames: [String] = FashionMNIST.classNames) {
        self.classifier = classifier
        self.classifierSHA256 = sha256
        self.name = name
        self.classNames = classNames
    }

    init(_ committed: CommittedReference) {
        self.init(classifier: committed.classifier, sha256: committed.sha256, name: committed.metricName, classNames: committed.classNames)
    }

    var fdName: String { "fd_\(name)" }
    var kidName: String { "kid_\(name)" }

    /// Whether the classifier reads images of this shape ([C, H, W] of one image).
    func reads(imageShape: [Int]) -> Bool { imageShape == classifier.inputShape }

    /// Whether labels named `names` are the classifier's classes (so it can check a prompted class).
    func knows(classNames names: [String]) -> Bool { !names.isEmpty && names == classNames }

    /// Features and logits of `images` [N, C, 32, 32] in [0, 1], in batches, without recording gradients.
    func outputs(_ images: Tensor) throws -> ReferenceOutputs {
        try checkImages(images)
        let n = images.shape[0], width = ReferenceClassifier.featureWidth, classes = classifier.classCount
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

    /// `fd_NAME`: Fréchet distance between the features of generated and real images.
    func frechetDistance(generated: Tensor, real: Tensor) throws -> MetricValue {
        try frechetDistance(generated: outputs(generated), real: outputs(real))
    }

    /// `fd_NAME` from outputs already computed (the real images' can be computed once per evaluation).
    func frechetDistance(generated: ReferenceOutputs, real: ReferenceOutputs) throws -> MetricValue {
        let value = try FrechetDistance.distance(GaussianStatistics(features: generated.features),
                                                 GaussianStatistics(features: real.features))
        return MetricValue(name: fdName, value: value, count: generated.count, referenceCount: real.count,
                           standardDeviation: nil)
    }

    /// `kid_NAME`: kernel inception distance between the features of generated and real images.
    func kernelDistance(generated: Tensor, real: Tensor, kid: KernelInceptionDistance = .init()) throws -> MetricValue {
        try kernelDistance(generated: outputs(generated), real: outputs(real), kid: kid)
    }

    func kernelDistance(generated: ReferenceOutputs, real: ReferenceOutputs,
                   kid: KernelInceptionDistance = .init()) throws -> MetricValue {
        let estimate = try kid.estimate(generated.features, real.features)
        return MetricValue(name: kidName, value: estimate.mean, count: generated.count, referenceCount: real.count,
                           standardDeviation: estimate.standardDeviation)
    }

    /// `t2i_accuracy`: the share of `images` that the classifier assigns to the class in their prompt.
    func t2iAccuracy(images: Tensor, promptedLabels: [Int32]) throws -> MetricValue {
        guard images.rank >= 1, images.shape[0] == promptedLabels.count else {
            throw MetricError(description: "t2i_accuracy: \(images.rank >= 1 ? images.shape[0] : 0) images but \(promptedLabels.count) prompted labels; give one label per image")
        }
        return try t2iAccuracy(outputs: outputs(images), promptedLabels: promptedLabels)
    }

    /// `t2i_accuracy` from the classifier's outputs on the images, already computed (for the distances).
    func t2iAccuracy(outputs: ReferenceOutputs, promptedLabels: [Int32]) throws -> MetricValue {
        guard outputs.count == promptedLabels.count else {
            throw MetricError(description: "t2i_accuracy: \(outputs.count) images but \(promptedLabels.count) prompted labels; give one label per image")
        }
        if let bad = promptedLabels.first(where: { $0 < 0 || Int($0) >= classifier.classCount }) {
            throw MetricError(description: "t2i_accuracy: prompted label \(bad) is not a class 0…\(classifier.classCount - 1)")
        }
        let predictions = outputs.predictions
        let correct = zip(predictions, promptedLabels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
        return MetricValue(name: "t2i_accuracy", value: Double(correct) / Double(max(promptedLabels.count, 1)),
                           count: promptedLabels.count, referenceCount: nil, standardDeviation: nil)
    }

    /// Images must be [N, C, 32, 32] (C the classifier's), N ≥ 1, finite and within [0, 1] (a decoder's
    /// output clamped).
    func checkImages(_ images: Tensor) throws {
        guard images.rank == 4, images.shape[0] >= 1, reads(imageShape: Array(images.shape.dropFirst())) else {
            throw MetricError(description: "images of shape \(images.shape); the reference classifier takes [N, \(classifier.channels), 32, 32] with N ≥ 1"
                              + (classifier.channels == 1 ? " (Fashion-MNIST padded by 2)" : ""))
        }
        let size = images.count / images.shape[0]
        for i in 0..<images.count where !(images.data[i] >= 0 && images.data[i] <= 1) {
            throw MetricError(description: "pixel \(i % size) of image \(i / size) is \(images.data[i]), outside [0, 1]; clamp the decoder's output to [0, 1] before measuring")
        }
    }
}

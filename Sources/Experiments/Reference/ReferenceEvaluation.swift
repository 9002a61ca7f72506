// `fusion reference eval`: the committed classifier's test accuracy and hash, and the image metrics
// between two sets of real images (train vs test) — the floor that generated images are measured
// against (DESIGN.md, "Measurements"; a real-vs-real FD is > 0 because of the finite-N bias alone).
import Foundation
import Fusion

enum ReferenceEvaluation {
    /// Prints accuracy, SHA-256 and the real-vs-real metrics on `count` images of each split.
    static func run(weights: String = ReferenceClassifier.committedPath, dataDirectory: String = FashionMNIST.directory,
                    count: Int = 10_000) throws {
        let committed = try ReferenceClassifier.loadCommitted(path: weights)
        guard committed.metricName == "fmnist" else {
            throw MetricError(description: "\(weights) is a classifier of other images (its metrics are fd_\(committed.metricName)); "
                              + "fusion reference eval measures Fashion-MNIST's. Its training run's log.h5 holds its test accuracy")
        }
        let test = try FashionMNIST.load(.test, directory: dataDirectory)
        let train = try FashionMNIST.load(.train, directory: dataDirectory)
        guard count >= 2 && count <= test.count else {
            throw MetricError(description: "--count must be between 2 and \(test.count) (the test set), got \(count)")
        }
        let started = Date()
        let metrics = ImageMetrics(committed)
        let testImages = test.images.narrow(axis: 0, start: 0, length: count)
        let real = try metrics.outputs(testImages)
        let other = try metrics.outputs(train.images.narrow(axis: 0, start: 0, length: count))
        let accuracy = try metrics.t2iAccuracy(images: testImages, promptedLabels: Array(test.labels[0..<count]))
        let fd = try metrics.frechetDistance(generated: other, real: real)
        let kid = try metrics.kernelDistance(generated: other, real: real)
        print("reference classifier \(committed.path)\n  sha256 \(committed.sha256)")
        print(String(format: "  test accuracy %.4f on the first %d test images", accuracy.value, accuracy.count))
        if let recorded = committed.metadata["test_accuracy"] {
            print("  (its training run recorded \(recorded) on \(committed.metadata["test_count"] ?? "?") test images)")
        }
        print(String(format: "  first %d train vs first %d test images: fd_fmnist %.4f, kid_fmnist %.6f ± %.6f (%d subsets of %d)",
                     fd.count, fd.referenceCount ?? 0, fd.value, kid.value, kid.standardDeviation ?? 0,
                     KernelInceptionDistance().subsetCount, min(KernelInceptionDistance().subsetSize, count)))
        print(String(format: "  (%.1f s)", Date().timeIntervalSince(started)))
    }
}

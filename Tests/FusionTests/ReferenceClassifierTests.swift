// The committed reference classifier (strict loading, its hash, its accuracy on a slice of the test
// set) and the image metrics computed with it (batching, agreement with direct computations, errors).
// Never trains: a freshly initialised classifier stands in where trained weights are not needed.
import XCTest
import Foundation
import Fusion
@testable import Experiments

final class ReferenceClassifierTests: XCTestCase {
    private func temporaryPath(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "fusion-reference-\(UUID().uuidString)-\(name)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func freshClassifier(seed: UInt64 = 1) -> ReferenceClassifier {
        var generator = RandomGenerator(seed: seed)
        return ReferenceClassifier(generator: &generator)
    }

    // MARK: Committed weights

    func testCommittedWeightsLoadWithTheirRecordedHash() throws {
        let committed = try ReferenceClassifier.loadCommitted()
        XCTAssertEqual(committed.sha256, ReferenceClassifier.committedSHA256,
                       "results/reference/classifier.h5 changed; if it was retrained on purpose, update committedSHA256 and results/reference/README.md")
        XCTAssertEqual(committed.sha256, try SHA256.hexDigest(ofFile: committed.path))
        XCTAssertEqual(committed.metadata["model"], ReferenceClassifier.modelTag)
        XCTAssertEqual(committed.classifier.parameterCount, freshClassifier().parameterCount)
        XCTAssertGreaterThanOrEqual(Double(committed.metadata["test_accuracy"] ?? "") ?? 0, 0.9, "DESIGN requires ≥ 90 % test accuracy")
    }

    /// The committed weights on the first 1,000 test images (the full set is `fusion reference eval`'s
    /// job). Skipped where the data package is not installed.
    func testCommittedWeightsClassifyATestSlice() throws {
        guard FileManager.default.fileExists(atPath: FashionMNIST.directory + "/t10k-images-idx3-ubyte.gz") else {
            throw XCTSkip("Fashion-MNIST is not installed (scripts/setup)")
        }
        let committed = try ReferenceClassifier.loadCommitted()
        let test = try FashionMNIST.load(.test)
        let n = 1000
        let metrics = ImageMetrics(committed)
        let accuracy = try metrics.t2iAccuracy(images: test.images.narrow(axis: 0, start: 0, length: n),
                                               promptedLabels: Array(test.labels[0..<n]))
        XCTAssertEqual(accuracy.count, n)
        // 90 % on 10,000 images; a 1,000-image slice has a standard error of ~1 %, so 86 % is 4σ below.
        XCTAssertGreaterThan(accuracy.value, 0.86, "accuracy \(accuracy.value) on the first \(n) test images")
    }

    func testWeightsRoundTripAndStrictRefusals() throws {
        let model = freshClassifier(seed: 5)
        let path = temporaryPath("weights.h5")
        try model.writeWeights(to: path, metadata: ["test_accuracy": "0.5"], overwrite: false)
        let loaded = try ReferenceClassifier.loadCommitted(path: path)
        XCTAssertEqual(loaded.metadata["test_accuracy"], "0.5")
        let live = model.parametersByName(), restored = loaded.classifier.parametersByName()
        XCTAssertEqual(Set(live.keys), Set(restored.keys))
        for (name, tensor) in live { XCTAssertEqual(tensor.array, restored[name]?.array, name) }

        // A missing and an extra tensor: refused, both named.
        var tensors = model.parametersByName()
        tensors["hidden"] = nil
        tensors["extra"] = Tensor(zeros: [3])
        let damaged = temporaryPath("damaged.h5")
        try Checkpoint(step: 0, tensors: tensors, metadata: ["model": ReferenceClassifier.modelTag]).write(to: damaged)
        XCTAssertThrowsError(try ReferenceClassifier.loadCommitted(path: damaged)) {
            let message = "\($0)"
            XCTAssertTrue(message.contains("'hidden': missing") && message.contains("'extra': in the checkpoint"), message)
        }
        // A misshapen tensor.
        tensors = model.parametersByName()
        tensors["outputBias"] = Tensor(zeros: [11])
        let misshapen = temporaryPath("misshapen.h5")
        try Checkpoint(step: 0, tensors: tensors, metadata: ["model": ReferenceClassifier.modelTag]).write(to: misshapen)
        XCTAssertThrowsError(try ReferenceClassifier.loadCommitted(path: misshapen)) {
            XCTAssertTrue("\($0)".contains("'outputBias': expected shape [10], found [11]"), "\($0)")
        }
        // Another model's checkpoint.
        let foreign = temporaryPath("foreign.h5")
        try Checkpoint(step: 0, tensors: model.parametersByName(), metadata: ["model": "vq-autoencoder"]).write(to: foreign)
        XCTAssertThrowsError(try ReferenceClassifier.loadCommitted(path: foreign)) {
            XCTAssertTrue("\($0)".contains("\"vq-autoencoder\", not of the reference-classifier"), "\($0)")
        }
        XCTAssertThrowsError(try ReferenceClassifier.loadCommitted(path: temporaryPath("absent.h5"))) {
            XCTAssertTrue("\($0)".contains("not found"), "\($0)")
        }
    }

    // MARK: Image metrics

    private func randomImages(_ n: Int, seed: UInt64) -> Tensor {
        var generator = RandomGenerator(seed: seed)
        return Tensor.randomUniform([n, 1, 32, 32], range: 0..<1, generator: &generator)
    }

    /// Batched outputs equal one forward pass over everything: the layers are per-image, so only the
    /// sgemm blocking differs; 1e-5 relative covers Float32 reassociation over 1,024-term sums.
    func testBatchedOutputsMatchOnePass() throws {
        let classifier = freshClassifier()
        var metrics = ImageMetrics(classifier: classifier, sha256: nil)
        metrics.batchSize = 7
        let images = randomImages(30, seed: 2)
        let batched = try metrics.outputs(images)
        let (features, logits) = withoutGradients { (classifier.features(images), classifier(images)) }
        XCTAssertEqual(batched.features.shape, [30, 128])
        XCTAssertEqual(batched.logits.shape, [30, 10])
        for (got, expected, what) in [(batched.features, features, "features"), (batched.logits, logits, "logits")] {
            let scale = expected.array.map(abs).max()!
            let worst = zip(got.array, expected.array).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "\(what): max difference \(worst)")
        }
        XCTAssertEqual(batched.predictions, ReferenceTraining.argmaxRows(logits))
    }

    func testMetricsAgreeWithDirectComputations() throws {
        let classifier = freshClassifier()
        let metrics = ImageMetrics(classifier: classifier, sha256: nil)
        let a = randomImages(40, seed: 3), b = randomImages(60, seed: 4)

        let same = try metrics.frechetDistance(generated: a, real: a)
        XCTAssertLessThan(abs(same.value), 1e-9, "fd_fmnist of a set with itself")
        let fd = try metrics.frechetDistance(generated: a, real: b)
        let direct = try FrechetDistance.distance(GaussianStatistics(features: metrics.outputs(a).features),
                                                  GaussianStatistics(features: metrics.outputs(b).features))
        XCTAssertEqual(fd.value, direct)
        XCTAssertEqual(fd.count, 40)
        XCTAssertEqual(fd.referenceCount, 60)
        XCTAssertEqual(fd.logRow.map(\.0), ["fd_fmnist", "fd_fmnist_n", "fd_fmnist_reference_n"])

        let kid = try metrics.kernelDistance(generated: a, real: b, kid: KernelInceptionDistance(subsetSize: 30, subsetCount: 4, seed: 1))
        XCTAssertEqual(kid.value, try KernelInceptionDistance(subsetSize: 30, subsetCount: 4, seed: 1)
            .estimate(metrics.outputs(a).features, metrics.outputs(b).features).mean)
        XCTAssertEqual(kid.logRow.map(\.0), ["kid_fmnist", "kid_fmnist_n", "kid_fmnist_reference_n", "kid_fmnist_std"])

        let predictions = ReferenceTraining.argmaxRows(withoutGradients { classifier(a) })
        var labels = predictions
        for i in stride(from: 0, to: 40, by: 4) { labels[i] = (labels[i] + 1) % 10 }  // 10 of 40 wrong
        let accuracy = try metrics.t2iAccuracy(images: a, promptedLabels: labels)
        XCTAssertEqual(accuracy.value, 0.75)
        XCTAssertEqual(accuracy.count, 40)
        XCTAssertEqual(accuracy.logRow.map(\.0), ["t2i_accuracy", "t2i_accuracy_n"])
    }

    func testMetricErrorsSayWhatToChange() {
        let metrics = ImageMetrics(classifier: freshClassifier(), sha256: nil)
        XCTAssertThrowsError(try metrics.outputs(Tensor(zeros: [2, 1, 28, 28]))) {
            XCTAssertTrue("\($0)".contains("[N, 1, 32, 32]"), "\($0)")
        }
        let bright = Tensor(repeating: 0.5, shape: [2, 1, 32, 32])
        bright.data[1024 + 5] = 1.5
        XCTAssertThrowsError(try metrics.outputs(bright)) {
            XCTAssertTrue("\($0)".contains("pixel 5 of image 1 is 1.5") && "\($0)".contains("clamp"), "\($0)")
        }
        XCTAssertThrowsError(try metrics.t2iAccuracy(images: randomImages(3, seed: 9), promptedLabels: [1, 2])) {
            XCTAssertTrue("\($0)".contains("3 images but 2 prompted labels"), "\($0)")
        }
        XCTAssertThrowsError(try metrics.t2iAccuracy(images: randomImages(2, seed: 9), promptedLabels: [1, 10])) {
            XCTAssertTrue("\($0)".contains("label 10 is not a class"), "\($0)")
        }
        XCTAssertThrowsError(try metrics.frechetDistance(generated: randomImages(1, seed: 9), real: randomImages(5, seed: 10))) {
            XCTAssertTrue("\($0)".contains("at least 2 samples"), "\($0)")
        }
    }
}

// The reference classifier's committed weights (results/reference/classifier.h5, DESIGN.md
// "Measurements"): loaded strictly (every key and shape, as Checkpoint.restore does) and identified by
// the SHA-256 of the file, which every run log records beside the metrics it computed with them.
//
// File layout: a Fusion checkpoint (kind "fusion-checkpoint") holding only the parameters under
// /tensors, no optimiser state, and metadata model = "reference-classifier", config, seed,
// test_accuracy, test_count, wall_seconds, git_commit.
import Foundation
import Fusion

/// The loaded classifier with the identity of the file it came from.
struct CommittedReference {
    let classifier: ReferenceClassifier
    /// The path the weights were read from.
    let path: String
    /// SHA-256 of the weights file, 64 lower-case hex digits (as `sha256sum` prints it).
    let sha256: String
    /// The file's metadata (config, seed, test_accuracy, …).
    let metadata: [String: String]
    /// What its metrics are called: fd_NAME and kid_NAME ("fmnist" for Fashion-MNIST's).
    var metricName: String { metadata["metric_name"] ?? "fmnist" }
    /// The names of its classes, in label order (Fashion-MNIST's for a file that names none and has
    /// their count; empty for a classifier of unnamed classes).
    var classNames: [String] {
        if let names = metadata["class_names"] { return names.isEmpty ? [] : names.components(separatedBy: "\n") }
        return classifier.classCount == FashionMNIST.classNames.count ? FashionMNIST.classNames : []
    }

    /// Writes the classifier's identity into a run's group: `reference_classifier_sha256` and
    /// `reference_classifier_path` (DESIGN.md: the hash goes into every log).
    func record(in group: HDF5Group) throws {
        try group.setAttribute("reference_classifier_sha256", sha256)
        try group.setAttribute("reference_classifier_path", path)
    }
}

struct ReferenceWeightsError: Error, CustomStringConvertible { let description: String }

extension ReferenceClassifier {
    /// Where the project keeps the committed weights, relative to the repository root.
    static let committedPath = "results/reference/classifier.h5"
    /// SHA-256 of the committed file (results/reference/README.md). Loading `committedPath` checks it,
    /// so a damaged file, a Git LFS pointer or an unannounced retraining cannot pass unnoticed.
    static let committedSHA256 = "794fdd3310feabac724ee4563ffcbdeb47f821f2e15ccd1b677ac780307ddcc4"
    /// The value of the metadata key "model" that marks a reference-classifier weights file.
    static let modelTag = "reference-classifier"

    /// Loads the committed weights strictly: the file must be a weights file of this model with every
    /// parameter present in its shape and nothing else. A relative `path` is looked up in the current
    /// directory, then in the repository that holds the running executable (`.build/…/fusion`).
    /// The committed file (the default path) must also have the hash `committedSHA256`.
    static func loadCommitted(path: String = committedPath) throws -> CommittedReference {
        guard let resolved = resolve(path) else {
            throw ReferenceWeightsError(description: "reference classifier weights '\(path)' not found (looked in \(FileManager.default.currentDirectoryPath) and above the executable); run from the repository root, or train them with `fusion reference train` and copy classifier.h5 (results/reference/README.md)")
        }
        let checkpoint: Checkpoint
        do { checkpoint = try Checkpoint.read(from: resolved) } catch {
            throw ReferenceWeightsError(description: "reference classifier weights '\(resolved)' could not be read: \(error)")
        }
        guard checkpoint.metadata["model"] == modelTag else {
            throw ReferenceWeightsError(description: "'\(resolved)' is a checkpoint of model \"\(checkpoint.metadata["model"] ?? "(none)")\", not of the \(modelTag); pass the file `fusion reference train` writes as classifier.h5")
        }
        // Its shape: files written before classifiers of other data recorded it are Fashion-MNIST's.
        guard let channels = Int(checkpoint.metadata["channels"] ?? "1"), let classes = Int(checkpoint.metadata["class_count"] ?? "10"),
              channels >= 1, classes >= 2 else {
            throw ReferenceWeightsError(description: "'\(resolved)': metadata channels \(checkpoint.metadata["channels"] ?? "") and class_count \(checkpoint.metadata["class_count"] ?? "") are not a classifier's shape (≥ 1 channel, ≥ 2 classes); the file is damaged, retrain it with `fusion reference train`")
        }
        var generator = RandomGenerator(seed: 0)  // replaced by the weights below
        let classifier = ReferenceClassifier(channels: channels, classCount: classes, generator: &generator)
        try checkpoint.restore(into: classifier.parametersByName())
        let sha256 = try SHA256.hexDigest(ofFile: resolved)
        if path == committedPath && sha256 != committedSHA256 {
            throw ReferenceWeightsError(description: "'\(resolved)' has SHA-256 \(sha256), but the committed weights have \(committedSHA256); restore the file with `git checkout -- \(committedPath)`, or, after retraining on purpose, update ReferenceClassifier.committedSHA256 and results/reference/README.md")
        }
        return CommittedReference(classifier: classifier, path: resolved, sha256: sha256, metadata: checkpoint.metadata)
    }

    /// Writes the parameters alone (no optimiser state) with the metadata `loadCommitted` expects.
    func writeWeights(to path: String, metadata: [String: String], overwrite: Bool) throws {
        var notes = metadata
        notes["model"] = Self.modelTag
        notes["channels"] = String(channels)
        notes["class_count"] = String(classCount)
        try Checkpoint(step: 0, tensors: parametersByName(), metadata: notes).write(to: path, overwrite: overwrite)
    }

    private static func resolve(_ path: String) -> String? {
        let files = FileManager.default
        if files.fileExists(atPath: path) || path.hasPrefix("/") { return files.fileExists(atPath: path) ? path : nil }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = directory.appendingPathComponent(path).path
            if files.fileExists(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return nil
    }
}

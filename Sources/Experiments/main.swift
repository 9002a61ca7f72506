// fusion: the command researchers run. Subcommands arrive with the issues that build them.
import ArgumentParser
import Foundation
import Fusion

struct FusionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fusion",
        abstract: "Fusion: a testbed for unified multimodal models (Chameleon, Show-o, Transfusion) on one core.",
        subcommands: [Reference.self, Demo.self])
}

struct Reference: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The reference classifier behind the FID proxy: a small CNN on Fashion-MNIST.",
        subcommands: [Train.self, Eval.self])

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train it with a fixed seed; writes log.h5, checkpoint.h5, classifier.h5 and test-images.png into --out.",
            discussion: """
                Settings come from the defaults, then --config FILE (YAML; missing keys keep their defaults), \
                then KEY=VALUE overrides (e.g. epochs=4 learning_rate=1e-3), then --epochs/--seed. \
                Unknown keys, wrong types and out-of-range values are refused. The keys and their defaults:

                \(ReferenceTrainingConfig().yaml)
                """)
        @Option(help: "Directory for the run's files.") var out = "runs/reference"
        @Option(help: "YAML file of training settings (a partial file is fine).") var config: String?
        @Argument(help: "Overrides KEY=VALUE applied after --config, e.g. learning_rate=1e-3.") var overrides: [String] = []
        @Option(help: "Passes over the 60,000 training images (default \(ReferenceTrainingConfig().epochs)).") var epochs: Int?
        @Option(help: "Seed of every random stream (init, data order).") var seed: UInt64?
        @Option(help: "Directory holding the Fashion-MNIST IDX .gz files.") var data = FashionMNIST.directory
        @Flag(help: "Replace the files of an existing run in --out.") var overwrite = false
        @Flag(help: "Print the resolved configuration as YAML and exit.") var printConfig = false

        func run() throws {
            if let epochs, epochs <= 0 { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
            let options = (epochs.map { ["epochs=\($0)"] } ?? []) + (seed.map { ["seed=\($0)"] } ?? [])
            let resolved = try ConfigLoader.load(ReferenceTrainingConfig.self, file: config, overrides: overrides + options)
            if printConfig {
                print(resolved.yaml, terminator: "")
                return
            }
            try ReferenceTraining.run(resolved, directory: out, overwrite: overwrite, dataDirectory: data)
        }
    }

    struct Eval: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Test accuracy and SHA-256 of the committed weights (results/reference/classifier.h5).")
        @Option(help: "The weights file (relative paths: the current directory, then the repository).")
        var weights = ReferenceClassifier.committedPath
        @Option(help: "Directory holding the Fashion-MNIST IDX .gz files.") var data = FashionMNIST.directory

        func run() throws {
            let reference = try ReferenceClassifier.loadCommitted(path: weights)
            let test = try FashionMNIST.load(.test, directory: data)
            let started = Date()
            let accuracy = ReferenceTraining.evaluate(reference.classifier, on: test)
            print(String(format: "reference classifier %@\n  sha256 %@\n  test accuracy %.4f on %d images (%.1f s)",
                         reference.path, reference.sha256, accuracy, test.count, Date().timeIntervalSince(started)))
            if let recorded = reference.metadata["test_accuracy"].flatMap(Double.init), abs(recorded - accuracy) > 1e-9 {
                print(String(format: "  note: the file records %.4f from its training run", recorded))
            }
        }
    }
}

/// The main job of the README's first command, until the quickstart experiment replaces it.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The end-to-end job scripts/run runs: trains the reference classifier into runs/reference, then measures real images with the committed one.")
    @Flag(help: "Replace the files of an earlier demo run.") var overwrite = false

    func run() throws {
        try ReferenceTraining.run(ReferenceTrainingConfig(), directory: "runs/reference", overwrite: overwrite)
        // The image metrics on real images, as the floor generated images will be compared with.
        let committed = try ReferenceClassifier.loadCommitted()
        let metrics = ImageMetrics(committed)
        let train = try FashionMNIST.load(.train), test = try FashionMNIST.load(.test)
        let n = 2000
        let real = try metrics.outputs(test.images.narrow(axis: 0, start: 0, length: n))
        let other = try metrics.outputs(train.images.narrow(axis: 0, start: 0, length: n))
        let fd = try metrics.fdFMNIST(generated: other, real: real)
        let kid = try metrics.kidFMNIST(generated: other, real: real)
        let accuracy = try metrics.t2iAccuracy(images: test.images.narrow(axis: 0, start: 0, length: n),
                                               promptedLabels: Array(test.labels[0..<n]))
        print("committed reference classifier \(committed.path) (sha256 \(committed.sha256))")
        print(String(format: "real train vs real test images: fd_fmnist %.4f, kid_fmnist %.5f ± %.5f (N = %d vs %d); t2i_accuracy of real test images with their labels %.4f (N = %d)",
                     fd.value, kid.value, kid.standardDeviation ?? 0, fd.count, fd.referenceCount ?? 0, accuracy.value, accuracy.count))
    }
}

do {
    var command = try FusionCommand.parseAsRoot()
    try command.run()
} catch let error as ValidationError {
    FusionCommand.exit(withError: error)
} catch let error as CleanExit {
    FusionCommand.exit(withError: error)
} catch {
    // Our own errors already say what went wrong and what to do; print them without a stack trace.
    FileHandle.standardError.write(Data("fusion: \(error)\n".utf8))
    exit(1)
}

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
            abstract: "Train it with a fixed seed; writes log.h5, checkpoint.h5 and test-images.png into --out.")
        @Option(help: "Directory for the run's files.") var out = "runs/reference"
        @Option(help: "Passes over the 60,000 training images (default \(ReferenceTrainingConfig().epochs)).") var epochs: Int?
        @Option(help: "Seed of every random stream (init, data order).") var seed: UInt64 = 0
        @Option(help: "Directory holding the Fashion-MNIST IDX .gz files.") var data = FashionMNIST.directory
        @Flag(help: "Replace the files of an existing run in --out.") var overwrite = false

        func run() throws {
            var config = ReferenceTrainingConfig()
            if let epochs {
                guard epochs > 0 else { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
                config.epochs = epochs
            }
            config.seed = seed
            try ReferenceTraining.run(config, directory: out, overwrite: overwrite, dataDirectory: data)
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
        abstract: "The end-to-end job scripts/run runs: trains the reference classifier into runs/reference.")
    @Flag(help: "Replace the files of an earlier demo run.") var overwrite = false

    func run() throws {
        try ReferenceTraining.run(ReferenceTrainingConfig(), directory: "runs/reference", overwrite: overwrite)
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

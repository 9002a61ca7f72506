// fusion: the command researchers run. Subcommands arrive with the issues that build them.
import ArgumentParser
import Foundation
import Fusion

struct FusionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fusion",
        abstract: "Fusion: a testbed for unified multimodal models (Chameleon, Show-o, Transfusion) on one core.",
        subcommands: [Reference.self, Demo.self, Autoencoder.self])
}

struct Reference: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The reference classifier behind the FID proxy: a small CNN on Fashion-MNIST.",
        subcommands: [Train.self])

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train it with a fixed seed; writes log.h5, checkpoint.h5 and test-images.png into --out.")
        @Option(help: "Directory for the run's files.") var out = "runs/reference"
        @Option(help: "Passes over the 60,000 training images.") var epochs = 3
        @Option(help: "Seed of every random stream (init, data order).") var seed: UInt64 = 0
        @Option(help: "Directory holding the Fashion-MNIST IDX .gz files.") var data = FashionMNIST.directory
        @Flag(help: "Replace the files of an existing run in --out.") var overwrite = false

        func run() throws {
            guard epochs > 0 else { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
            var config = ReferenceTrainingConfig()
            config.epochs = epochs
            config.seed = seed
            try ReferenceTraining.run(config, directory: out, overwrite: overwrite, dataDirectory: data)
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

// fusion: the command researchers run (README.md, "Running experiments").
import ArgumentParser
import Foundation
import Fusion

struct FusionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fusion",
        abstract: "Fusion: a testbed for unified multimodal models (Chameleon, Show-o, Transfusion) on one core.",
        subcommands: [TrainCommand.self, EvalCommand.self, SampleCommand.self, SweepCommand.self, ReportCommand.self, AnalyzeCommand.self,
                      DataCommand.self, Autoencoder.self, EncoderCommand.self, Reference.self])
}

struct Reference: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The reference classifier behind the FID proxy: a small CNN on Fashion-MNIST (committed) or on your labelled images.",
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
        @Option(help: "JSONL manifest of labelled images of your own to train on instead of Fashion-MNIST.") var images: String?
        @Option(help: "With --images: channels to read them at (1 grey, 3 RGB), as the runs' autoencoder does.") var channels = 1
        @Option(help: "With --images: the classes' names in label order, comma-separated (as data.classes lists them).") var classes: String?
        @Option(help: "With --images: what the metrics it gives are called, fd_NAME and kid_NAME.") var name: String?
        @Flag(help: "Replace the files of an existing run in --out.") var overwrite = false
        @Flag(help: "Print the resolved configuration as YAML and exit.") var printConfig = false

        func referenceImages() throws -> ReferenceImages {
            var chosen = ReferenceImages(fashionMNISTDirectory: data)
            guard let images else {
                if classes != nil || name != nil || channels != 1 { throw ValidationError("--classes, --name and --channels go with --images") }
                return chosen
            }
            guard let name, !name.isEmpty, name != "fmnist", name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }),
                  Report.isReferenceDistance("fd_" + name) else {
                throw ValidationError("--images needs --name NAME (letters, digits, _; not fmnist, not ending in _n or _std): "
                                      + "its metrics are called fd_NAME and kid_NAME")
            }
            guard [1, 3].contains(channels) else { throw ValidationError("--channels must be 1 or 3, got \(channels)") }
            chosen.manifest = images
            chosen.channels = channels
            chosen.classNames = classes.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
            chosen.metricName = name
            return chosen
        }

        func run() throws {
            if let epochs, epochs <= 0 { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
            let options = (epochs.map { ["epochs=\($0)"] } ?? []) + (seed.map { ["seed=\($0)"] } ?? [])
            let resolved = try ConfigLoader.load(ReferenceTrainingConfig.self, file: config, overrides: overrides + options)
            if printConfig {
                print(resolved.yaml, terminator: "")
                return
            }
            try ReferenceTraining.run(resolved, directory: out, overwrite: overwrite, images: try referenceImages())
        }
    }

    struct Eval: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Test accuracy and SHA-256 of the committed weights (results/reference/classifier.h5), and fd_fmnist/kid_fmnist between real train and test images.")
        @Option(help: "The weights file (relative paths: the current directory, then the repository).")
        var weights = ReferenceClassifier.committedPath
        @Option(help: "Images of each split to measure (the first N).") var count = 10_000
        @Option(help: "Directory holding the Fashion-MNIST IDX .gz files.") var data = FashionMNIST.directory

        func run() throws {
            try ReferenceEvaluation.run(weights: weights, dataDirectory: data, count: count)
        }
    }
}

// Parsing errors, --help (which parses to a command that throws when run), validation errors and clean
// exits are ArgumentParser's to print; other errors from running are ours.
// Under a launcher (mpirun, srun) every rank ends MPI on a normal exit or an agreed interruption; on an
// error, which may be one rank's alone while the others wait in a collective, the run is aborted.
let launched = Communicator.launched(environment: ProcessInfo.processInfo.environment)
// Whole lines as they are printed, also to a file or a pipe (where C's stdio would hold them until exit).
setvbuf(stdout, nil, _IOLBF, 0)
do {
    var command = try FusionCommand.parseAsRoot()
    try command.run()
    if launched { Communicator.world.finalize() }
} catch {
    if let interrupted = error as? Interrupted {
        // The run saved its work before stopping; say how to continue, and exit as a signal would (130, 143).
        if !launched || Communicator.world.isRoot { FileHandle.standardError.write(Data("fusion: \(interrupted)\n".utf8)) }
        if launched { Communicator.world.finalize() }
        exit(interrupted.exitStatus)
    }
    if FusionCommand.exitCode(for: error) != .failure { FusionCommand.exit(withError: error) }
    // Our own errors already say what went wrong and what to do; print them without a stack trace.
    guard launched && Communicator.world.size > 1 else {
        FileHandle.standardError.write(Data("fusion: \(error)\n".utf8))
        exit(1)
    }
    let world = Communicator.world
    FileHandle.standardError.write(Data("fusion\(world.isRoot ? "" : " (rank \(world.rank) of \(world.size))"): \(error)\n".utf8))
    if !world.isRoot { sleep(2) }  // most errors are every rank's: let rank 0's message come first
    world.abort(status: 1)
}

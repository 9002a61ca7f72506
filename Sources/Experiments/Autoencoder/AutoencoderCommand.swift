// `fusion autoencoder train [CONFIG] …` and `fusion autoencoder eval --weights …`: the image
// autoencoders (vq / lfq / kl) on Fashion-MNIST, or on your own images (--images MANIFEST). CONFIG is a JSON file of AutoencoderConfig keys (any
// subset; unknown keys are refused with the list of valid ones); the options below override it.
import ArgumentParser
import Foundation
import Fusion

extension AutoencoderConfig.Kind: ExpressibleByArgument {}

struct Autoencoder: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Image autoencoders (vq, lfq, kl bottlenecks on one conv encoder/decoder) on Fashion-MNIST or your own images.",
        subcommands: [Train.self, Eval.self])

    /// The command line as typed, for the log and the weights' metadata.
    static var commandLine: String {
        (["fusion"] + CommandLine.arguments.dropFirst()).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    }

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train on the training set, evaluate on the test set; writes weights.h5, log.h5 and reconstructions.png into --out.")
        @Argument(help: "JSON file of configuration keys (AutoencoderConfig); omitted keys keep their defaults.")
        var config: String?
        @Option(help: "Bottleneck: vq, lfq or kl (overrides the file).") var kind: AutoencoderConfig.Kind?
        @Option(help: "Training steps (overrides the file).") var steps: Int?
        @Option(help: "Seed of every random stream (overrides the file).") var seed: UInt64?
        @Option(help: "Directory for the run's files (default runs/autoencoder-KIND).") var out: String?
        @Option(help: "Directory holding the Fashion-MNIST IDX .gz files.") var data = FashionMNIST.directory
        @Option(help: "JSONL manifest of a PNG folder to train on instead of Fashion-MNIST (set imageSide and imageChannels to match).")
        var images: String?
        @Flag(help: "Replace the files of an existing run in --out.") var overwrite = false

        func resolvedConfig() throws -> AutoencoderConfig {
            var resolved = try config.map { try AutoencoderConfig.load(json: $0) } ?? AutoencoderConfig()
            if let kind { resolved.kind = kind }
            if let steps { resolved.steps = steps }
            if let seed { resolved.seed = seed }
            let problems = resolved.problems
            guard problems.isEmpty else {
                throw ValidationError("invalid autoencoder configuration: " + problems.joined(separator: "; "))
            }
            return resolved
        }

        func run() throws {
            let resolved = try resolvedConfig()
            try AutoencoderTraining.train(resolved, directory: out ?? "runs/autoencoder-\(resolved.kind.rawValue)",
                                          overwrite: overwrite, command: Autoencoder.commandLine,
                                          images: ImageSource(manifest: images, fashionMNISTDirectory: data))
        }
    }

    struct Eval: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Evaluate trained weights on the test set; writes eval-log.h5 and eval-reconstructions.png into --out.")
        @Option(help: "Weights written by `fusion autoencoder train` (e.g. results/autoencoders/vq/weights.h5).")
        var weights: String
        @Option(help: "Refuse weights of another bottleneck (vq, lfq, kl).") var kind: AutoencoderConfig.Kind?
        @Option(help: "Directory for the evaluation's files (default: the weights' directory).") var out: String?
        @Option(help: "Directory holding the Fashion-MNIST IDX .gz files.") var data = FashionMNIST.directory
        @Option(help: "JSONL manifest of a PNG folder whose test split to evaluate on instead of Fashion-MNIST's.") var images: String?
        @Flag(help: "Replace earlier evaluation files in --out.") var overwrite = false

        func run() throws {
            let directory = out ?? (weights as NSString).deletingLastPathComponent
            try AutoencoderTraining.evaluate(weights: weights, kind: kind, directory: directory.isEmpty ? "." : directory,
                                             overwrite: overwrite, command: Autoencoder.commandLine,
                                          images: ImageSource(manifest: images, fashionMNISTDirectory: data))
        }
    }
}

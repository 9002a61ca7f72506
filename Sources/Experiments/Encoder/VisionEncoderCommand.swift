// `fusion encoder train …`: the `vit` understanding encoder, trained contrastively (SigLIP) on image–caption
// pairs of Fashion-MNIST or of your own images (--images MANIFEST), and `fusion encoder eval` of trained
// weights. The options override VisionEncoderConfig's defaults.
import ArgumentParser
import Foundation
import Fusion

struct EncoderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encoder",
        abstract: "The ViT understanding encoder (recipe.understanding.encoder: vit), trained with SigLIP's sigmoid loss on image–caption pairs.",
        subcommands: [Train.self, Eval.self])

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train on the training split, measure retrieval on the test split; writes weights.h5 and log.h5 into --out.")
        @Option(help: "Training steps.") var steps: Int?
        @Option(help: "Image–caption pairs per step.") var batchSize: Int?
        @Option(help: "Peak learning rate.") var learningRate: Float?
        @Option(help: "Encoder width.") var width: Int?
        @Option(help: "Encoder blocks.") var layers: Int?
        @Option(help: "Seed of every random stream.") var seed: UInt64?
        @Option(help: "Directory for the run's files.") var out = "runs/encoder-vit"
        @Option(help: "Directory holding the Fashion-MNIST IDX .gz files.") var data = FashionMNIST.directory
        @Option(help: "JSONL manifest of a PNG folder with captions to train on instead of Fashion-MNIST.") var images: String?
        @Option(help: "Side of the manifest's images (Fashion-MNIST's are 32).") var imageSide: Int?
        @Option(help: "Channels of the manifest's images (1 grey, 3 RGB).") var imageChannels: Int?
        @Flag(help: "Replace the files of an existing run in --out.") var overwrite = false

        func run() throws {
            var config = VisionEncoderConfig()
            if let steps { config.steps = steps }
            if let batchSize { config.batchSize = batchSize }
            if let learningRate { config.learningRate = learningRate }
            if let width { config.width = width; config.embeddingWidth = width }
            if let layers { config.layers = layers }
            if let seed { config.seed = seed }
            if let imageSide { config.imageSide = imageSide }
            if let imageChannels { config.imageChannels = imageChannels }
            guard config.problems.isEmpty else {
                throw ValidationError("invalid encoder configuration: " + config.problems.joined(separator: "; "))
            }
            try VisionEncoderTraining.train(config, directory: out, overwrite: overwrite, command: Autoencoder.commandLine,
                                            images: ImageSource(manifest: images, fashionMNISTDirectory: data))
        }
    }

    struct Eval: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Measure retrieval of trained weights on the test split.")
        @Option(help: "Weights written by `fusion encoder train` (e.g. results/encoders/vit/weights.h5).") var weights: String
        @Option(help: "Directory holding the Fashion-MNIST IDX .gz files.") var data = FashionMNIST.directory
        @Option(help: "JSONL manifest of a PNG folder whose test split to measure on instead of Fashion-MNIST's.") var images: String?

        func run() throws {
            let (model, words) = try SigmoidContrastiveModel.load(from: weights)
            let test = try ImageSource(manifest: images, fashionMNISTDirectory: data)
                .load(side: model.image.config.imageSide, channels: model.image.config.imageChannels).test
            let metrics = VisionEncoderTraining.evaluate(model, vocabulary: CaptionWords(words), on: test, classPrompts: images == nil && test.labels != nil)
            print("encoder \(weights): \(metrics.summary)")
        }
    }
}

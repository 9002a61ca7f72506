// The reference classifier: a small CNN trained once on Fashion-MNIST with a fixed seed (the committed
// one), or by `fusion reference train --images` on a labelled folder of your own. Its penultimate
// features are what the FID proxy (`fd_NAME`, `kid_NAME`; `fd_fmnist` for the committed one) compares,
// and its predictions are what `t2i_accuracy` scores (DESIGN.md, Measurements).
//
// Shapes (B images of C channels, 32×32 after padding; K classes):
//   x [B, C, 32, 32] → conv 3×3 (32) → SiLU → avg-pool → [B, 32, 16, 16]
//                    → conv 3×3 (64) → SiLU → avg-pool → [B, 64, 8, 8]
//                    → conv 3×3 (64) → SiLU → avg-pool → [B, 64, 4, 4] → flatten [B, 1024]
//                    → linear (128) → SiLU = features [B, 128] → linear (K) = logits [B, K]
import Fusion

public final class ReferenceClassifier: Module {
    public static let featureWidth = 128
    /// The side of the images it reads.
    public static let side = 32
    /// C: channels of the images it reads (1 for Fashion-MNIST).
    public let channels: Int
    /// K: the classes it tells apart (10 for Fashion-MNIST).
    public let classCount: Int
    /// The images it reads: [C, H, W] of one image.
    public var inputShape: [Int] { [channels, Self.side, Self.side] }

    let conv1: Tensor, conv1Bias: Tensor  // [32, C, 3, 3], [32]
    let conv2: Tensor, conv2Bias: Tensor  // [64, 32, 3, 3], [64]
    let conv3: Tensor, conv3Bias: Tensor  // [64, 64, 3, 3], [64]
    let hidden: Tensor, hiddenBias: Tensor  // [128, 1024], [128]
    let output: Tensor, outputBias: Tensor  // [K, 128], [K]

    /// He-style initialisation (std = √(2 / fan-in)) from the given generator.
    public init(channels: Int = 1, classCount: Int = 10, generator: inout RandomGenerator) {
        precondition(channels >= 1 && classCount >= 2, "ReferenceClassifier: \(channels) channels and \(classCount) classes; it needs ≥ 1 and ≥ 2")
        self.channels = channels
        self.classCount = classCount
        func weight(_ shape: [Int], fanIn: Int) -> Tensor {
            let t = Tensor.randomNormal(shape, std: (2 / Float(fanIn)).squareRoot(), generator: &generator)
            t.requiresGrad = true
            return t
        }
        conv1 = weight([32, channels, 3, 3], fanIn: 9 * channels); conv1Bias = Tensor(zeros: [32], requiresGrad: true)
        conv2 = weight([64, 32, 3, 3], fanIn: 288); conv2Bias = Tensor(zeros: [64], requiresGrad: true)
        conv3 = weight([64, 64, 3, 3], fanIn: 576); conv3Bias = Tensor(zeros: [64], requiresGrad: true)
        hidden = weight([128, 1024], fanIn: 1024); hiddenBias = Tensor(zeros: [128], requiresGrad: true)
        output = weight([classCount, 128], fanIn: 128); outputBias = Tensor(zeros: [classCount], requiresGrad: true)
    }

    /// Penultimate features [B, 128] of images [B, C, 32, 32] in [0, 1].
    public func features(_ images: Tensor) -> Tensor {
        precondition(images.rank == 4 && Array(images.shape.dropFirst()) == inputShape,
                     "ReferenceClassifier: images of shape \(images.shape), expected [B, \(channels), 32, 32]")
        var x = avgPool2x(conv2d(images, weight: conv1, bias: conv1Bias, padding: 1).silu())
        x = avgPool2x(conv2d(x, weight: conv2, bias: conv2Bias, padding: 1).silu())
        x = avgPool2x(conv2d(x, weight: conv3, bias: conv3Bias, padding: 1).silu())
        return (linear(x.reshaped([images.shape[0], 1024]), hidden) + hiddenBias).silu()
    }

    /// Class logits [B, K].
    public func callAsFunction(_ images: Tensor) -> Tensor {
        logits(features: features(images))
    }

    /// Class logits [B, K] from penultimate features [B, 128] (so metrics need one forward pass for both).
    public func logits(features: Tensor) -> Tensor {
        linear(features, output) + outputBias
    }
}

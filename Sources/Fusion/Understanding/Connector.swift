// Connectors: what maps an image encoder's features to tokens of the LM's width D (DESIGN.md, "The
// understanding side"). The input is a row-major grid of n×n patch features [I, n·n, E]; the output
// [I, M, D] is M tokens per image, which enter the LM's sequence or its cross-attention layers.
//
//   linear         one projection per patch (LLaVA 1.0, Liu et al. 2023, §4.1)                M = n²
//   mlp            two layers with GELU (LLaVA 1.5, Liu et al. 2024, §3.1)                      M = n²
//   pixel_shuffle  each 2×2 block of patches concatenated into one (space to channels), then
//                  the MLP (InternVL 1.5, Chen et al. 2024, §3.1; a quarter of the tokens)       M = n²/4
//   resampler      `PerceiverResampler.swift`                                                    M = queries
//   qformer        `QFormer.swift`                                                               M = queries
//
// Shape alphabet: I images, n patches per side, E feature width, D LM width, M tokens per image.
import Foundation

public protocol Connector: Module {
    /// Patch features [I, n·n, E] of an n×n grid → tokens [I, M, D].
    func callAsFunction(_ features: Tensor, grid n: Int) -> Tensor
    /// Whether the tokens keep the patches' grid (row-major, n² or n²/4 of them), so that a position
    /// embedding of the grid can be added to them.
    var keepsGrid: Bool { get }
}

/// The linear, MLP and pixel-shuffle connectors.
public final class ProjectionConnector: Module, Connector {
    let kind: UnderstandingConfig.Connector
    let weight: Tensor?, bias: Tensor?  // [D, E], [D] (linear)
    let mlp: FeedForward?  // E (4E after pixel shuffle) → D → D

    init(_ kind: UnderstandingConfig.Connector, features e: Int, width d: Int, generator: inout RandomGenerator) {
        precondition([.linear, .mlp, .pixelShuffle].contains(kind), "ProjectionConnector: \(kind) is not a projection")
        self.kind = kind
        if kind == .linear {
            weight = Tensor.randomNormal([d, e], std: 1 / Float(e).squareRoot(), generator: &generator, requiresGrad: true)
            bias = Tensor(zeros: [d], requiresGrad: true)
            mlp = nil
        } else {
            weight = nil; bias = nil
            mlp = FeedForward(input: kind == .pixelShuffle ? 4 * e : e, hidden: d, output: d, generator: &generator)
        }
    }

    public var keepsGrid: Bool { true }

    public func callAsFunction(_ features: Tensor, grid n: Int) -> Tensor {
        switch kind {
        case .linear: return linear(features, weight!) + bias!
        case .pixelShuffle: return mlp!(pixelShuffle(features, grid: n))
        default: return mlp!(features)
        }
    }
}

/// [I, n·n, E] → [I, (n/2)², 4E]: each 2×2 block of neighbouring patches as one, its four feature
/// vectors side by side (row by row within the block); the merged grid stays row-major.
public func pixelShuffle(_ features: Tensor, grid n: Int) -> Tensor {
    let (i, e) = (features.shape[0], features.shape[2])
    checkShape(features.rank == 3 && features.shape[1] == n * n && n % 2 == 0,
               "pixelShuffle: features \(features.shape) must be [I, n·n, E] with an even n (n = \(n))")
    let h = n / 2
    return features.reshaped([i, h, 2, h, 2, e]).permuted([0, 1, 3, 2, 4, 5]).reshaped([i, h * h, 4 * e])
}

/// Fixed 2-D sine–cosine position embedding of an n×n grid [n·n, D] (MAE, He et al. 2022, App. A.1, after
/// Vaswani et al. 2017, §3.5): the first half of the channels encode the row, the second half the
/// column. Coordinates are in units of the full image's grid (`full` patches per side), so a thumbnail's
/// coarser patch sits where it covers the image. Not trained.
public func gridPositionEmbedding(grid n: Int, full: Int, width d: Int) -> Tensor {
    let quarter = d / 4, out = Tensor(zeros: [n * n, d])
    let step = Float(full) / Float(n)
    for r in 0..<n {
        for c in 0..<n {
            let row = out.data + (r * n + c) * d
            for (half, coordinate) in [(0, (Float(r) + 0.5) * step), (1, (Float(c) + 0.5) * step)] {
                for k in 0..<quarter {
                    let angle = coordinate / Foundation.pow(10_000, Float(k) / Float(max(quarter, 1)))
                    row[half * d / 2 + k] = Foundation.sin(angle)
                    row[half * d / 2 + quarter + k] = Foundation.cos(angle)
                }
            }
        }
    }
    return out
}

/// LayerNorm's weight and bias (Ba et al. 2016), as the resampler and the Q-Former normalise.
public final class LayerNormWeights: Module {
    let weight: Tensor, bias: Tensor  // [D]
    init(width d: Int) {
        weight = Tensor(repeating: 1, shape: [d], requiresGrad: true)
        bias = Tensor(zeros: [d], requiresGrad: true)
    }
    func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias) }
}

/// What the Perceiver Resampler and the Q-Former share around their layers: the patch features projected
/// to D with the fixed 2-D position embedding (attention alone cannot tell where a patch was), the
/// learned queries every image starts from, and the final LayerNorm of what the queries became.
public final class LearnedQueries: Module {
    let input: Tensor, inputBias: Tensor  // [D, E], [D]
    let queries: Tensor  // [Q, D]
    let outputNorm: LayerNormWeights
    /// Patches per side of a full image (a thumbnail has fewer; see `gridPositionEmbedding`).
    let fullGrid: Int

    init(features e: Int, width d: Int, queries count: Int, fullGrid: Int, generator: inout RandomGenerator) {
        input = Tensor.randomNormal([d, e], std: 1 / Float(e).squareRoot(), generator: &generator, requiresGrad: true)
        inputBias = Tensor(zeros: [d], requiresGrad: true)
        queries = Tensor.randomNormal([count, d], std: 1, generator: &generator, requiresGrad: true)
        outputNorm = LayerNormWeights(width: d)
        self.fullGrid = fullGrid
    }

    /// Patch features [I, n·n, E] → [I, n·n, D], positioned.
    func project(_ features: Tensor, grid n: Int) -> Tensor {
        linear(features, input) + inputBias + gridPositionEmbedding(grid: n, full: fullGrid, width: queries.shape[1])
    }

    /// The queries of `images` images [I, Q, D], each image's the same learned ones.
    func start(images: Int) -> Tensor {
        Tensor(zeros: [images, 1, 1]) + queries.reshaped([1] + queries.shape)
    }
}

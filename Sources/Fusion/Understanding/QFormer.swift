// BLIP-2's Querying Transformer (Li et al. 2023, §3.1, Fig. 2), its image side: learned queries that
// attend to each other (self-attention) and to the image features (cross-attention), then a
// feed-forward layer, per layer:
//     q ← q + SelfAttention(LN(q))
//     q ← q + CrossAttention(LN(q), LN(x))
//     q ← q + FFW(LN(q))
// BLIP-2 initialises it from BERT, cross-attends every other layer and trains its text side with three
// losses before the LM sees it; here it is trained from scratch with the LM, cross-attending in every
// layer. As in the resampler, the features are projected to D with a fixed 2-D position embedding.
//
// Shape alphabet: I images, N patches, E feature width, Q queries, D width.

public final class QFormer: Module, Connector {
    struct Layer {
        let selfNorm: LayerNormWeights
        let selfAttention: CrossAttentionLayer
        let crossNorm: LayerNormWeights, featureNorm: LayerNormWeights
        let crossAttention: CrossAttentionLayer
        let mlpNorm: LayerNormWeights
        let mlp: FeedForward
    }

    let input: Tensor, inputBias: Tensor  // [D, E], [D]
    let queries: Tensor  // [Q, D]
    let layers: [Layer]
    let outputNorm: LayerNormWeights
    let fullGrid: Int

    init(features e: Int, width d: Int, heads: Int, queries count: Int, layers layerCount: Int, fullGrid: Int,
         generator: inout RandomGenerator) {
        input = Tensor.randomNormal([d, e], std: 1 / Float(e).squareRoot(), generator: &generator, requiresGrad: true)
        inputBias = Tensor(zeros: [d], requiresGrad: true)
        queries = Tensor.randomNormal([count, d], std: 1, generator: &generator, requiresGrad: true)
        let residualStd = 1 / Float(d * 3 * layerCount).squareRoot()
        layers = (0..<layerCount).map { _ in
            Layer(selfNorm: LayerNormWeights(width: d),
                  selfAttention: CrossAttentionLayer(width: d, heads: heads, outputStd: residualStd, generator: &generator),
                  crossNorm: LayerNormWeights(width: d), featureNorm: LayerNormWeights(width: d),
                  crossAttention: CrossAttentionLayer(width: d, heads: heads, outputStd: residualStd, generator: &generator),
                  mlpNorm: LayerNormWeights(width: d),
                  mlp: FeedForward(input: d, hidden: 4 * d, output: d, outputStd: residualStd / 2, generator: &generator))
        }
        outputNorm = LayerNormWeights(width: d)
        self.fullGrid = fullGrid
    }

    public var keepsGrid: Bool { false }

    public func callAsFunction(_ features: Tensor, grid n: Int) -> Tensor {
        let (i, (count, d)) = (features.shape[0], (queries.shape[0], queries.shape[1]))
        let x = linear(features, input) + inputBias + gridPositionEmbedding(grid: n, full: fullGrid, width: d)  // [I, N, D]
        var q = Tensor(zeros: [i, 1, 1]) + queries.reshaped([1, count, d])
        for layer in layers {
            let normed = layer.selfNorm(q)
            q = q + layer.selfAttention(normed, over: normed)
            q = q + layer.crossAttention(layer.crossNorm(q), over: layer.featureNorm(x))
            q = q + layer.mlp(layer.mlpNorm(q))
        }
        return outputNorm(q)
    }
}

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

    /// The learned queries, the features' projection and the output norm.
    let queries: LearnedQueries
    let layers: [Layer]

    init(features e: Int, width d: Int, heads: Int, queries count: Int, layers layerCount: Int, fullGrid: Int,
         generator: inout RandomGenerator) {
        queries = LearnedQueries(features: e, width: d, queries: count, fullGrid: fullGrid, generator: &generator)
        let residualStd = 1 / Float(d * 3 * layerCount).squareRoot()
        layers = (0..<layerCount).map { _ in
            Layer(selfNorm: LayerNormWeights(width: d),
                  selfAttention: CrossAttentionLayer(width: d, heads: heads, outputStd: residualStd, generator: &generator),
                  crossNorm: LayerNormWeights(width: d), featureNorm: LayerNormWeights(width: d),
                  crossAttention: CrossAttentionLayer(width: d, heads: heads, outputStd: residualStd, generator: &generator),
                  mlpNorm: LayerNormWeights(width: d),
                  mlp: FeedForward(input: d, hidden: 4 * d, output: d, outputStd: residualStd / 2, generator: &generator))
        }
    }

    public var keepsGrid: Bool { false }

    public func callAsFunction(_ features: Tensor, grid n: Int) -> Tensor {
        let x = queries.project(features, grid: n)  // [I, N, D]
        var q = queries.start(images: features.shape[0])
        for layer in layers {
            let normed = layer.selfNorm(q)
            q = q + layer.selfAttention(normed, over: normed)
            q = q + layer.crossAttention(layer.crossNorm(q), over: layer.featureNorm(x))
            q = q + layer.mlp(layer.mlpNorm(q))
        }
        return queries.outputNorm(q)
    }
}

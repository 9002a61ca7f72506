// Flamingo's Perceiver Resampler (Alayrac et al. 2022, §2.1, App. A.1.1, Fig. 5): a fixed number of
// learned latent queries cross-attend to the image features, so that any number of patches becomes the
// same few tokens. Per layer, the keys and values are the features *and* the latents themselves:
//     latents ← latents + Attention(LN(latents), [LN(x); LN(latents)])
//     latents ← latents + FFW(LN(latents))
// The features are first projected to the LM's width D and given a fixed 2-D position embedding
// (attention alone cannot tell where a patch was).
//
// Shape alphabet: I images, N patches, E feature width, Q latents, D width.

public final class PerceiverResampler: Module, Connector {
    struct Layer {
        let featureNorm: LayerNormWeights, latentNorm: LayerNormWeights
        let attention: CrossAttentionLayer
        let mlpNorm: LayerNormWeights
        let mlp: FeedForward
    }

    /// The learned latents, the features' projection and the output norm.
    let latents: LearnedQueries
    let layers: [Layer]

    /// `fullGrid`: patches per side of a full image (a thumbnail has fewer; see `gridPositionEmbedding`).
    init(features e: Int, width d: Int, heads: Int, queries: Int, layers count: Int, fullGrid: Int,
         generator: inout RandomGenerator) {
        latents = LearnedQueries(features: e, width: d, queries: queries, fullGrid: fullGrid, generator: &generator)
        let residualStd = 1 / Float(d * 2 * count).squareRoot()
        layers = (0..<count).map { _ in
            Layer(featureNorm: LayerNormWeights(width: d), latentNorm: LayerNormWeights(width: d),
                  attention: CrossAttentionLayer(width: d, heads: heads, outputStd: residualStd, generator: &generator),
                  mlpNorm: LayerNormWeights(width: d),
                  mlp: FeedForward(input: d, hidden: 4 * d, output: d, outputStd: residualStd / 2, generator: &generator))
        }
    }

    public var keepsGrid: Bool { false }

    public func callAsFunction(_ features: Tensor, grid n: Int) -> Tensor {
        let x = latents.project(features, grid: n)  // [I, N, D]
        var l = latents.start(images: features.shape[0])
        for layer in layers {
            let normed = layer.latentNorm(l)
            l = l + layer.attention(normed, over: concatenate([layer.featureNorm(x), normed], axis: 1))
            l = l + layer.mlp(layer.mlpNorm(l))
        }
        return latents.outputNorm(l)
    }
}

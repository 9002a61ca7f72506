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

    let input: Tensor, inputBias: Tensor  // [D, E], [D]
    let latents: Tensor  // [Q, D]
    let layers: [Layer]
    let outputNorm: LayerNormWeights
    let fullGrid: Int

    /// `fullGrid`: patches per side of a full image (a thumbnail has fewer; see `gridPositionEmbedding`).
    init(features e: Int, width d: Int, heads: Int, queries: Int, layers count: Int, fullGrid: Int,
         generator: inout RandomGenerator) {
        input = Tensor.randomNormal([d, e], std: 1 / Float(e).squareRoot(), generator: &generator, requiresGrad: true)
        inputBias = Tensor(zeros: [d], requiresGrad: true)
        latents = Tensor.randomNormal([queries, d], std: 1, generator: &generator, requiresGrad: true)
        let residualStd = 1 / Float(d * 2 * count).squareRoot()
        layers = (0..<count).map { _ in
            Layer(featureNorm: LayerNormWeights(width: d), latentNorm: LayerNormWeights(width: d),
                  attention: CrossAttentionLayer(width: d, heads: heads, outputStd: residualStd, generator: &generator),
                  mlpNorm: LayerNormWeights(width: d),
                  mlp: FeedForward(input: d, hidden: 4 * d, output: d, outputStd: residualStd / 2, generator: &generator))
        }
        outputNorm = LayerNormWeights(width: d)
        self.fullGrid = fullGrid
    }

    public var keepsGrid: Bool { false }

    public func callAsFunction(_ features: Tensor, grid n: Int) -> Tensor {
        let (i, (q, d)) = (features.shape[0], (latents.shape[0], latents.shape[1]))
        let x = linear(features, input) + inputBias + gridPositionEmbedding(grid: n, full: fullGrid, width: d)  // [I, N, D]
        var l = Tensor(zeros: [i, 1, 1]) + latents.reshaped([1, q, d])  // every image starts from the same latents
        for layer in layers {
            let normed = layer.latentNorm(l)
            l = l + layer.attention(normed, over: concatenate([layer.featureNorm(x), normed], axis: 1))
            l = l + layer.mlp(layer.mlpNorm(l))
        }
        return outputNorm(l)
    }
}

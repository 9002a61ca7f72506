// Multi-head attention of one set of positions (the queries) over another (the keys and values): the
// projections around `crossAttention`. The Perceiver Resampler's latents over the image features, the
// Q-Former's queries over them (and over themselves), and the LM's text positions over an image in
// Flamingo's gated blocks all use it.
//
// Shape alphabet: B sequences, Tq queries, Tk keys, D width, H heads, Dh = D/H.

public final class CrossAttentionLayer: Module {
    let heads: Int
    let wq: Tensor, wk: Tensor, wv: Tensor  // [D, D]
    let wo: Tensor  // [D, D]

    /// `outputStd`: the output projection's initial spread (small on a residual branch).
    init(width d: Int, heads: Int, outputStd: Float, generator: inout RandomGenerator) {
        self.heads = heads
        let std = 1 / Float(d).squareRoot()
        func weight(_ std: Float) -> Tensor { Tensor.randomNormal([d, d], std: std, generator: &generator, requiresGrad: true) }
        wq = weight(std); wk = weight(std); wv = weight(std)
        wo = weight(outputStd)
    }

    /// queries [B, Tq, D] over keys [B, Tk, D] → [B, Tq, D]; `allowed` as in `crossAttention`.
    func callAsFunction(_ queries: Tensor, over keys: Tensor, allowed: CrossAttentionMask? = nil) -> Tensor {
        let (b, tq, tk, d) = (queries.shape[0], queries.shape[1], keys.shape[1], queries.shape[2])
        let dh = d / heads
        let q = linear(queries, wq).reshaped([b, tq, heads, dh])
        let kv = linear(keys, stacked: [wk, wv]).reshaped([b, tk, 2, heads, dh])
        let k = kv.narrow(axis: 2, start: 0, length: 1).reshaped([b, tk, heads, dh])
        let v = kv.narrow(axis: 2, start: 1, length: 1).reshaped([b, tk, heads, dh])
        return linear(crossAttention(query: q, key: k, value: v, allowed: allowed).reshaped([b, tq, d]), wo)
    }
}

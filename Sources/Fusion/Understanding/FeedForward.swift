// The two-layer GELU MLP of the understanding side: LLaVA 1.5's connector (Liu et al. 2024, §3.1),
// the feed-forward layer of the Perceiver Resampler, the Q-Former and Flamingo's gated blocks
// (Vaswani et al. 2017, eq. 2, with GELU, Hendrycks & Gimpel 2016).
//
// Shape alphabet: N rows, E input width, F hidden width, D output width.

public final class FeedForward: Module {
    let w1: Tensor  // [F, E]
    let b1: Tensor  // [F]
    let w2: Tensor  // [D, F]
    let b2: Tensor  // [D]

    /// Weights ~ N(0, 1/fan-in), so activations keep unit scale; `outputStd` overrides the second
    /// layer's (a residual branch starts small). Biases start at 0.
    init(input e: Int, hidden f: Int, output d: Int, outputStd: Float? = nil, generator: inout RandomGenerator) {
        w1 = Tensor.randomNormal([f, e], std: 1 / Float(e).squareRoot(), generator: &generator, requiresGrad: true)
        b1 = Tensor(zeros: [f], requiresGrad: true)
        w2 = Tensor.randomNormal([d, f], std: outputStd ?? 1 / Float(f).squareRoot(), generator: &generator, requiresGrad: true)
        b2 = Tensor(zeros: [d], requiresGrad: true)
    }

    /// x [..., E] → [..., D].
    func callAsFunction(_ x: Tensor) -> Tensor { linear((linear(x, w1) + b1).gelu(), w2) + b2 }
}

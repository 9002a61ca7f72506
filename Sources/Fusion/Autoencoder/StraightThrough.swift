// The straight-through estimator (Bengio, Léonard & Courville 2013, arXiv 1308.3432, §3; used for the
// quantisers as z + sg(q − z) by van den Oord et al. 2017, VQ-VAE §3.2): the forward pass hands on the
// quantised values q, the backward pass copies the gradient to z unchanged, as if quantisation were
// the identity. One op instead of the composition z + (q − z).detached(), which would round-trip q
// through two Float32 subtractions (q − z + z ≠ q in floating point).
//
//   forward:  y = q         (q carries no gradient)
//   backward: dz += dy      (the identity Jacobian)

/// y = `quantized`'s values, with the gradient of y passed to `input` unchanged. Same shapes.
public func straightThrough(_ input: Tensor, quantized: Tensor) -> Tensor {
    checkShape(input.shape == quantized.shape,
               "straightThrough: input \(input.shape) and quantized values \(quantized.shape) differ")
    let out = quantized.copy()
    return out.recordGraph(inputs: [input]) { _, g in
        let gx = input.gradientBuffer(), gy = g.data
        Parallel.forRanges(input.count) { r in for i in r { gx[i] += gy[i] } }
    }
}

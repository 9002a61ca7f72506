// Activations of the feed-forward layers, fused forward and backward:
//   SiLU (Elfwing et al. 2018):  silu(x) = x·σ(x),  silu'(x) = σ(x)·(1 + x·(1 − σ(x)))
//   GELU, tanh form (Hendrycks & Gimpel 2016, eq. in §2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
//   SwiGLU (Shazeer 2020, "GLU Variants Improve Transformer"): swiglu(a, b) = silu(a)·b
//   `swiglu(gateAndUp:)` reads a and b as the two halves of each row of one [N, 2F] tensor, the output
//   of one stacked projection (`linear(_:stacked:)`): one sgemm instead of two, tested against
//   `swiglu(narrow, narrow)`. `swigluProjection` adds the down projection and recomputes the SwiGLU
//   output in the backward pass instead of keeping it.
import Foundation


extension Tensor {
    public func silu() -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data
        Parallel.forRanges(count, minimumPerThread: 4096) { r in for i in r { y[i] = x[i] * logistic(x[i]) } }
        FlopCounter.add(4 * count)
        return out.recordGraph(inputs: [self]) { _, g in
            let gx = self.gradientBuffer(), gy = g.data
            Parallel.forRanges(self.count, minimumPerThread: 4096) { r in
                for i in r { let s = logistic(x[i]); gx[i] += gy[i] * s * (1 + x[i] * (1 - s)) }
            }
        }
    }

    public func gelu() -> Tensor {
        let c: Float = 0.7978845608028654  // √(2/π)
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data
        Parallel.forRanges(count, minimumPerThread: 4096) { r in
            for i in r { let v = x[i]; y[i] = 0.5 * v * (1 + Foundation.tanh(c * (v + 0.044715 * v * v * v))) }
        }
        FlopCounter.add(8 * count)
        return out.recordGraph(inputs: [self]) { _, g in
            let gx = self.gradientBuffer(), gy = g.data
            Parallel.forRanges(self.count, minimumPerThread: 4096) { r in
                for i in r {
                    let v = x[i], t = Foundation.tanh(c * (v + 0.044715 * v * v * v))
                    let dInner = c * (1 + 3 * 0.044715 * v * v)
                    gx[i] += gy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * dInner)
                }
            }
        }
    }
}

/// silu(gate) · up, one pass each way (the SwiGLU feed-forward's element-wise core).
public func swiglu(_ gate: Tensor, _ up: Tensor) -> Tensor {
    checkShape(gate.shape == up.shape, "swiglu: gate \(gate.shape) and up \(up.shape) differ")
    let out = Tensor(uninitializedShape: gate.shape)
    let a = gate.data, b = up.data, y = out.data
    Parallel.forRanges(out.count, minimumPerThread: 4096) { r in for i in r { y[i] = a[i] * logistic(a[i]) * b[i] } }
    FlopCounter.add(5 * out.count)
    return out.recordGraph(inputs: [gate, up]) { _, g in
        let gy = g.data
        // Fresh gradient buffers are stored into rather than zero-filled and added to.
        let (ga, freshA) = gate.requiresGrad ? gate.gradientBufferForWriting() : (nil, false)
        let (gb, freshB) = up.requiresGrad ? up.gradientBufferForWriting() : (nil, false)
        Parallel.forRanges(out.count, minimumPerThread: 4096) { r in
            // Branch-free loops rather than one with optional stores, so each vectorises.
            if let ga {
                if freshA { for i in r { let s = logistic(a[i]); ga[i] = gy[i] * b[i] * s * (1 + a[i] * (1 - s)) } }
                else { for i in r { let s = logistic(a[i]); ga[i] += gy[i] * b[i] * s * (1 + a[i] * (1 - s)) } }
            }
            if let gb {
                if freshB { for i in r { gb[i] = gy[i] * a[i] * logistic(a[i]) } }
                else { for i in r { gb[i] += gy[i] * a[i] * logistic(a[i]) } }
            }
        }
    }
}

/// silu(x[..., :F]) · x[..., F:] for x [..., 2F] → [..., F]: SwiGLU of a stacked gate/up projection.
public func swiglu(gateAndUp x: Tensor) -> Tensor {
    let out = swigluValues(gateAndUp: x)
    FlopCounter.add(5 * out.count)
    return out.recordGraph(inputs: [x]) { _, g in swigluBackward(gateAndUp: x, outputGradient: g.data) }
}

/// linear(swiglu(gateAndUp: x), weight) for x [..., 2F] and weight [out, F], without keeping the SwiGLU
/// output [..., F] for the backward pass: the backward pass computes it again from x, which it keeps
/// anyway. That saves the MLP's second-largest saved activation (F = 8/3·D floats a position per layer)
/// for 5·F FLOPs a position, beside the 2·out·F of the product. The same values, bit for bit, as the
/// composition (the test oracle); the recomputation is not counted as FLOPs: the model's work is unchanged.
public func swigluProjection(gateAndUp x: Tensor, _ weight: Tensor) -> Tensor {
    let f = (x.shape.last ?? 0) / 2
    checkShape(weight.rank == 2 && weight.shape[1] == f,
               "swigluProjection: input \(x.shape) (gate and up halves of \(f)) against weight \(weight.name ?? "") of shape \(weight.shape)")
    let hidden = swigluValues(gateAndUp: x)  // [N, F], released after the product
    FlopCounter.add(5 * hidden.count)
    let n = hidden.count / max(f, 1), outFeatures = weight.shape[0]
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outFeatures])
    BLAS.sgemm(transA: false, transB: true, m: n, n: outFeatures, k: f,
               a: hidden.data, lda: f, b: weight.data, ldb: f, c: out.data, ldc: outFeatures)
    withExtendedLifetime(hidden) {}  // its buffer must outlive the product that reads it
    return out.recordGraph(inputs: [x, weight]) { _, g in
        if weight.requiresGrad {  // dW[out, F] += dyᵀ[out, n] · h[n, F], h computed again
            let again = swigluValues(gateAndUp: x)
            let (gw, fresh) = weight.gradientBufferForWriting()
            BLAS.sgemm(transA: true, transB: false, m: outFeatures, n: f, k: n,
                       a: g.data, lda: outFeatures, b: again.data, ldb: f, beta: fresh ? 0 : 1, c: gw, ldc: f)
            withExtendedLifetime(again) {}
        }
        if x.requiresGrad {  // dh[n, F] = dy[n, out] · W[out, F], then through SwiGLU
            let hiddenGradient = Tensor(uninitializedShape: [n, f])
            BLAS.sgemm(transA: false, transB: false, m: n, n: f, k: outFeatures,
                       a: g.data, lda: outFeatures, b: weight.data, ldb: f, c: hiddenGradient.data, ldc: f)
            swigluBackward(gateAndUp: x, outputGradient: hiddenGradient.data)
            withExtendedLifetime(hiddenGradient) {}
        }
    }
}

/// silu(a)·b of each row's halves, with no graph and no FLOP count (the callers count).
private func swigluValues(gateAndUp x: Tensor) -> Tensor {
    let width = x.shape.last ?? 0
    checkShape(x.rank >= 1 && width % 2 == 0, "swiglu(gateAndUp:): last dimension of \(x.shape) must be even (gate and up halves)")
    let f = width / 2, rows = x.count / max(width, 1)
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [f])
    let xs = x.data, y = out.data
    Parallel.forRows(rows, width: width) { r in
        for row in r {
            let a = xs + row * width, b = a + f, yr = y + row * f
            for i in 0..<f { yr[i] = a[i] * logistic(a[i]) * b[i] }
        }
    }
    return out
}

/// Adds (or stores, into a fresh buffer) the gradient at x [..., 2F] of silu(a)·b given the gradient
/// `gy` [..., F] at its output.
private func swigluBackward(gateAndUp x: Tensor, outputGradient gy: UnsafeMutablePointer<Float>) {
    let width = x.shape.last ?? 0, f = width / 2, rows = x.count / max(width, 1)
    let xs = x.data, (gx, fresh) = x.gradientBufferForWriting()
    Parallel.forRows(rows, width: width) { r in
        for row in r {
            let a = xs + row * width, b = a + f, go = gy + row * f, ga = gx + row * width, gb = ga + f
            // One loop for both halves: σ(a) is computed once per element, not once per half.
            if fresh {
                for i in 0..<f {
                    let s = logistic(a[i])
                    ga[i] = go[i] * b[i] * s * (1 + a[i] * (1 - s))
                    gb[i] = go[i] * a[i] * s
                }
            } else {
                for i in 0..<f {
                    let s = logistic(a[i])
                    ga[i] += go[i] * b[i] * s * (1 + a[i] * (1 - s))
                    gb[i] += go[i] * a[i] * s
                }
            }
        }
    }
}

// Activations of the feed-forward layers, fused forward and backward:
//   SiLU (Elfwing et al. 2018):  silu(x) = x·σ(x),  silu'(x) = σ(x)·(1 + x·(1 − σ(x)))
//   GELU, tanh form (Hendrycks & Gimpel 2016, eq. in §2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
//   SwiGLU (Shazeer 2020, "GLU Variants Improve Transformer"): swiglu(a, b) = silu(a)·b
//   `swiglu(gateAndUp:)` reads a and b as the two halves of each row of one [N, 2F] tensor, the output
//   of one stacked projection (`linear(_:stacked:)`): one sgemm instead of two, tested against
//   `swiglu(narrow, narrow)`.
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
    FlopCounter.add(5 * out.count)
    return out.recordGraph(inputs: [x]) { _, g in
        let (gx, fresh) = x.gradientBufferForWriting(), gy = g.data
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
}

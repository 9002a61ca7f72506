// Softmax and log-softmax over the last dimension, fused with their backward passes:
//   y = softmax(x):      dx = y ∘ (dy − Σⱼ dyⱼ·yⱼ)
//   y = log_softmax(x):  dx = dy − softmax(x) · Σⱼ dyⱼ
// Rows are independent, so they are split over the cores.
import Foundation

/// Writes softmax of `n` values into `out` (may equal `x`), subtracting the max for stability.
@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
    let peak = maximum(x, n)
    if peak == -.infinity { for j in 0..<n { out[j] = 0 }; return }  // a row with nothing allowed
    let inverse = 1 / exponentiate(x, minus: peak, into: out, n)
    for j in 0..<n { out[j] *= inverse }
}

extension Tensor {
    /// softmax over the last dimension.
    public func softmax() -> Tensor {
        let n = shape.last ?? 1, rows = count / max(n, 1)
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data
        Parallel.forRows(rows, width: n) { r in
            for row in r { softmaxRow(x + row * n, y + row * n, n) }
        }
        FlopCounter.add(4 * count)
        return out.recordGraph(inputs: [self]) { out, g in
            let gx = self.gradientBuffer(), y = out.data, gy = g.data
            Parallel.forRows(rows, width: n) { r in
                for row in r {
                    let o = row * n
                    let dot = Fusion.dot(gy + o, y + o, n)
                    for j in 0..<n { gx[o + j] += y[o + j] * (gy[o + j] - dot) }
                }
            }
        }
    }

    /// log(softmax) over the last dimension, computed as x − max − log Σ exp(x − max).
    public func logSoftmax() -> Tensor {
        let n = shape.last ?? 1, rows = count / max(n, 1)
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data
        Parallel.forRows(rows, width: n) { r in
            for row in r {
                let xr = x + row * n, yr = y + row * n
                let peak = maximum(xr, n)
                let logTotal = peak + Foundation.log(sumOfExponentials(xr, minus: peak, n))
                for j in 0..<n { yr[j] = xr[j] - logTotal }
            }
        }
        FlopCounter.add(4 * count)
        return out.recordGraph(inputs: [self]) { out, g in
            let gx = self.gradientBuffer(), y = out.data, gy = g.data
            Parallel.forRows(rows, width: n) { r in
                for row in r {
                    let o = row * n
                    let total = Fusion.sum(gy + o, n)
                    for j in 0..<n { gx[o + j] += gy[o + j] }
                    addScaledExponentials(y + o, minus: 0, scale: -total, into: gx + o, n)
                }
            }
        }
    }
}

/// Softmax's backward in place over `rows` rows of `width` (the attention kernels' score matrices):
/// dS = P ∘ (dP − Σⱼ dPⱼ·Pⱼ), with dP given in `gradient` and overwritten by dS. A row of P that is all
/// zeros (a query that saw no key) gets zeros.
func softmaxBackwardInPlace(probabilities p: UnsafePointer<Float>, gradient ds: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
    Parallel.forRows(rows, width: width) { range in
        for row in range {
            let pr = p + row * width, dr = ds + row * width
            let dot = Fusion.dot(dr, pr, width)
            for j in 0..<width { dr[j] = pr[j] * (dr[j] - dot) }
        }
    }
}

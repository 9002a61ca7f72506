// Normalisation over the last dimension, fused with hand-written backward passes (composed versions
// are the test oracle, see NormTests):
//   RMSNorm (Zhang & Sennrich 2019, eq. 4):  y = x · rstd · w,  rstd = 1/√(mean(x²) + ε)
//       dx = rstd · (dy·w − x̂ · mean(dy·w·x̂)),  dw += Σ_rows dy·x̂,  with x̂ = x·rstd
//   LayerNorm (Ba et al. 2016, eq. 4):       y = (x − μ) · rstd · w + b,  rstd = 1/√(var(x) + ε)
//       dx = rstd · (dy·w − mean(dy·w) − x̂ · mean(dy·w·x̂)),  dw += Σ dy·x̂,  db += Σ dy
import Foundation

/// Most chunks of rows `accumulateOverRows` splits a sum into: a constant, not the thread count, so that
/// the order of the additions, and so every bit of the sum, is the same on any number of threads.
let rowChunksOfASum = 8

/// Sums per-row contributions to a [D] parameter gradient without two threads writing one address:
/// each chunk of rows adds into its own partial buffer, the partials are then added in order.
func accumulateOverRows(rows: Int, width: Int, into target: UnsafeMutablePointer<Float>?,
                                _ body: (Range<Int>, UnsafeMutablePointer<Float>?) -> Void) {
    guard let target else { Parallel.forRanges(rows, minimumPerThread: max(1, 8192 / width)) { body($0, nil) }; return }
    let chunks = max(1, min(rowChunksOfASum, rows / max(1, 8192 / width)))
    let partial = Tensor(zeros: [chunks, width])
    Parallel.perform(iterations: chunks) { c in
        body((rows * c / chunks)..<(rows * (c + 1) / chunks), partial.data + c * width)
    }
    for c in 0..<chunks { for j in 0..<width { target[j] += partial.data[c * width + j] } }
}

/// RMSNorm over the last dimension; `weight` [D] is optional (a plain normalisation without it).
public func rmsNorm(_ x: Tensor, weight: Tensor?, epsilon: Float = 1e-6) -> Tensor {
    let d = x.shape.last ?? 1, rows = x.count / d
    if let weight { checkShape(weight.shape == [d], "rmsNorm: weight \(weight.name ?? "") of shape \(weight.shape) for input \(x.shape)") }
    let out = Tensor(uninitializedShape: x.shape)
    let rstd = Tensor(uninitializedShape: [rows])  // saved for backward: 1/√(mean(x²)+ε) per row
    let xs = x.data, ys = out.data, w = weight?.data
    Parallel.forRanges(rows, minimumPerThread: max(1, 8192 / d)) { r in
        for row in r {
            let xr = xs + row * d, yr = ys + row * d
            let sumSquares = dot(xr, xr, d)
            let s = 1 / (sumSquares / Float(d) + epsilon).squareRoot()
            rstd.data[row] = s
            if let w { for j in 0..<d { yr[j] = xr[j] * s * w[j] } } else { for j in 0..<d { yr[j] = xr[j] * s } }
        }
    }
    FlopCounter.add(4 * x.count)
    return out.recordGraph(inputs: weight.map { [x, $0] } ?? [x]) { _, g in
        let (gx, freshX) = x.requiresGrad ? x.gradientBufferForWriting() : (nil, false)
        let gw = weight?.requiresGrad == true ? weight!.gradientBuffer() : nil
        accumulateOverRows(rows: rows, width: d, into: gw) { r, partialW in
            for row in r {
                let xr = xs + row * d, gy = g.data + row * d, s = rstd.data[row]
                // Σ dy·w·x̂
                let dot = s * (w.map { Fusion.dot(gy, $0, xr, d) } ?? Fusion.dot(gy, xr, d))
                if let partialW { for j in 0..<d { partialW[j] += gy[j] * xr[j] * s } }
                if let gx {
                    let mean = dot / Float(d), gr = gx + row * d, s2mean = s * s * mean
                    // Fresh: store (no zero-fill); otherwise add. With or without a weight: four loops, each vectorised.
                    switch (freshX, w) {
                    case (true, let w?): for j in 0..<d { gr[j] = s * gy[j] * w[j] - xr[j] * s2mean }
                    case (false, let w?): for j in 0..<d { gr[j] += s * gy[j] * w[j] - xr[j] * s2mean }
                    case (true, nil): for j in 0..<d { gr[j] = s * gy[j] - xr[j] * s2mean }
                    case (false, nil): for j in 0..<d { gr[j] += s * gy[j] - xr[j] * s2mean }
                    }
                }
            }
        }
    }
}

/// LayerNorm over the last dimension with optional weight [D] and bias [D].
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Float = 1e-5) -> Tensor {
    let d = x.shape.last ?? 1, rows = x.count / d
    for p in [weight, bias].compactMap({ $0 }) {
        checkShape(p.shape == [d], "layerNorm: parameter \(p.name ?? "") of shape \(p.shape) for input \(x.shape)")
    }
    let out = Tensor(uninitializedShape: x.shape)
    let mean = Tensor(uninitializedShape: [rows]), rstd = Tensor(uninitializedShape: [rows])  // saved for backward
    let xs = x.data, ys = out.data, w = weight?.data, b = bias?.data
    Parallel.forRanges(rows, minimumPerThread: max(1, 8192 / d)) { r in
        for row in r {
            let xr = xs + row * d, yr = ys + row * d
            var total: Float = 0
            for j in 0..<d { total += xr[j] }
            let mu = total / Float(d)
            var variance: Float = 0  // two-pass: no cancellation when |μ| ≫ σ
            for j in 0..<d { let c = xr[j] - mu; variance += c * c }
            let s = 1 / (variance / Float(d) + epsilon).squareRoot()
            mean.data[row] = mu
            rstd.data[row] = s
            for j in 0..<d { yr[j] = (xr[j] - mu) * s * (w?[j] ?? 1) + (b?[j] ?? 0) }
        }
    }
    FlopCounter.add(6 * x.count)
    return out.recordGraph(inputs: [x, weight, bias].compactMap { $0 }) { _, g in
        let gx = x.requiresGrad ? x.gradientBuffer() : nil
        let gw = weight?.requiresGrad == true ? weight!.gradientBuffer() : nil
        if let bias, bias.requiresGrad {
            let gb = bias.gradientBuffer()
            for row in 0..<rows { for j in 0..<d { gb[j] += g.data[row * d + j] } }
        }
        accumulateOverRows(rows: rows, width: d, into: gw) { r, partialW in
            for row in r {
                let xr = xs + row * d, gy = g.data + row * d, mu = mean.data[row], s = rstd.data[row]
                var sumDy: Float = 0, dot: Float = 0
                for j in 0..<d {
                    let dyw = gy[j] * (w?[j] ?? 1)
                    sumDy += dyw
                    dot += dyw * (xr[j] - mu) * s
                }
                if let partialW { for j in 0..<d { partialW[j] += gy[j] * (xr[j] - mu) * s } }
                if let gx {
                    let meanDy = sumDy / Float(d), meanDot = dot / Float(d), gr = gx + row * d
                    for j in 0..<d { gr[j] += s * (gy[j] * (w?[j] ?? 1) - meanDy - (xr[j] - mu) * s * meanDot) }
                }
            }
        }
    }
}

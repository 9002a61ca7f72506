// Group normalisation (Wu & He 2018, "Group Normalization", §3.1, eq. 1–2 with the groups of eq. 7),
// fused with a hand-written backward pass: the norm of the convolutional autoencoders and U-Net blocks.
//
// Shapes: B batch, C channels, H W height and width, G groups, Cg = C / G channels per group,
//   n = Cg·H·W elements per (b, g). In NCHW the elements of one (b, g) are contiguous.
//
//   forward:  μ, rstd = 1/√(σ² + ε) per (b, g);   x̂ = (x − μ)·rstd;   y = x̂·w[c] + bias[c]
//   backward: dx = rstd · (dy·w[c] − mean_g(dy·w) − x̂ · mean_g(dy·w·x̂)),
//             dw[c] += Σ_{b,h,w} dy·x̂,   dbias[c] += Σ_{b,h,w} dy
// (the same rule as layerNorm's, with the mean over a group and a per-channel weight inside it).
// The test oracle is a direct Float64 computation of the definition (GroupNormTests).
import Foundation

/// Mean and 1/√(variance + ε) of n values: two passes (no cancellation when |μ| ≫ σ), each summed in
/// Float64 with four partial sums, so the adds do not wait on each other.
@inline(__always)
private func meanAndRstd(_ p: UnsafePointer<Float>, count n: Int, epsilon: Float) -> (mean: Float, rstd: Float) {
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    var i = 0
    while i + 4 <= n {
        s0 += Double(p[i]); s1 += Double(p[i + 1]); s2 += Double(p[i + 2]); s3 += Double(p[i + 3])
        i += 4
    }
    while i < n { s0 += Double(p[i]); i += 1 }
    let mean = ((s0 + s1) + (s2 + s3)) / Double(n)
    s0 = 0; s1 = 0; s2 = 0; s3 = 0
    i = 0
    while i + 4 <= n {
        let c0 = Double(p[i]) - mean, c1 = Double(p[i + 1]) - mean
        let c2 = Double(p[i + 2]) - mean, c3 = Double(p[i + 3]) - mean
        s0 += c0 * c0; s1 += c1 * c1; s2 += c2 * c2; s3 += c3 * c3
        i += 4
    }
    while i < n { let c = Double(p[i]) - mean; s0 += c * c; i += 1 }
    let variance = ((s0 + s1) + (s2 + s3)) / Double(n)
    return (Float(mean), Float(1 / (variance + Double(epsilon)).squareRoot()))
}

/// Group normalisation of x [B, C, H, W] over `groups` groups of C / groups channels, with a per-channel
/// affine weight [C] and bias [C]. Also accepts any [B, C, ...] input (the trailing dimensions are one area).
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float = 1e-5) -> Tensor {
    checkShape(x.rank >= 2, "groupNorm: input must be [B, C, H, W], got shape \(x.shape)")
    let batch = x.shape[0], channels = x.shape[1]
    checkShape(groups >= 1 && channels % groups == 0,
               "groupNorm: \(channels) channels (input \(x.shape)) cannot be split into \(groups) groups; "
               + "use a group count that divides the channel count")
    checkShape(weight.shape == [channels],
               "groupNorm: weight\(weight.name.map { " \($0)" } ?? "") has shape \(weight.shape), expected [\(channels)]")
    checkShape(bias.shape == [channels],
               "groupNorm: bias\(bias.name.map { " \($0)" } ?? "") has shape \(bias.shape), expected [\(channels)]")
    let area = batch * channels == 0 ? 0 : x.count / (batch * channels)  // H·W
    let perGroup = channels / groups  // Cg
    let n = perGroup * area  // elements per (b, g)

    let out = Tensor(uninitializedShape: x.shape)  // [B, C, H, W]
    let groupMean = Tensor(uninitializedShape: [batch, groups])  // saved for backward: μ per (b, g)
    let groupRstd = Tensor(uninitializedShape: [batch, groups])  // saved for backward: 1/√(σ² + ε) per (b, g)
    let xs = x.data, ys = out.data, w = weight.data, b = bias.data
    Parallel.forRanges(batch * groups, minimumPerThread: max(1, 8192 / max(1, n))) { range in
        for bg in range {
            let (mu, s) = meanAndRstd(xs + bg * n, count: n, epsilon: epsilon)
            groupMean.data[bg] = mu
            groupRstd.data[bg] = s
            let firstChannel = (bg % groups) * perGroup
            for j in 0..<perGroup {
                let plane = bg * n + j * area  // (b, c) with c = firstChannel + j
                let xc = xs + plane, yc = ys + plane  // [H, W]
                let scale = s * w[firstChannel + j], shift = b[firstChannel + j]
                for i in 0..<area { yc[i] = (xc[i] - mu) * scale + shift }
            }
        }
    }
    FlopCounter.add(7 * x.count)  // sum; centre, square, add; centre, scale, shift

    return out.recordGraph(inputs: [x, weight, bias]) { _, grad in
        let gy = grad.data  // [B, C, H, W]
        // Pass 1, per (b, c) plane: the two sums every gradient is made of.
        let sumDy = Tensor(uninitializedShape: [batch, channels])  // Σ_{h,w} dy
        let sumDyXhat = Tensor(uninitializedShape: [batch, channels])  // Σ_{h,w} dy·x̂
        Parallel.forRanges(batch * channels, minimumPerThread: max(1, 8192 / max(1, area))) { range in
            for plane in range {
                let bg = plane / perGroup, mu = groupMean.data[bg], s = groupRstd.data[bg]
                let xc = xs + plane * area, gc = gy + plane * area  // [H, W]
                // Four partial sums of each, so that the adds do not wait on each other.
                var d0: Float = 0, d1: Float = 0, d2: Float = 0, d3: Float = 0
                var p0: Float = 0, p1: Float = 0, p2: Float = 0, p3: Float = 0
                var i = 0
                while i + 4 <= area {
                    d0 += gc[i]; d1 += gc[i + 1]; d2 += gc[i + 2]; d3 += gc[i + 3]
                    p0 += gc[i] * (xc[i] - mu); p1 += gc[i + 1] * (xc[i + 1] - mu)
                    p2 += gc[i + 2] * (xc[i + 2] - mu); p3 += gc[i + 3] * (xc[i + 3] - mu)
                    i += 4
                }
                while i < area { d0 += gc[i]; p0 += gc[i] * (xc[i] - mu); i += 1 }
                sumDy.data[plane] = (d0 + d1) + (d2 + d3)
                sumDyXhat.data[plane] = ((p0 + p1) + (p2 + p3)) * s
            }
        }
        FlopCounter.add(5 * x.count)
        if weight.requiresGrad {
            let gw = weight.gradientBuffer()  // [C]
            for bi in 0..<batch { for c in 0..<channels { gw[c] += sumDyXhat.data[bi * channels + c] } }
        }
        if bias.requiresGrad {
            let gb = bias.gradientBuffer()  // [C]
            for bi in 0..<batch { for c in 0..<channels { gb[c] += sumDy.data[bi * channels + c] } }
        }
        guard x.requiresGrad else { return }
        let gx = x.gradientBuffer()  // [B, C, H, W]
        // Pass 2, per (b, c) plane: dx = rstd·w·dy − rstd·mean_g(dy·w) − rstd²·(x − μ)·mean_g(dy·w·x̂).
        // The two group means are recomputed for each plane of the group: Cg multiply-adds, negligible beside H·W.
        Parallel.forRanges(batch * channels, minimumPerThread: max(1, 8192 / max(1, area))) { range in
            for plane in range {
                let bg = plane / perGroup, mu = groupMean.data[bg], s = groupRstd.data[bg]
                let firstPlane = bg * perGroup, firstChannel = firstPlane % channels
                var meanDyW: Float = 0, meanDyWXhat: Float = 0
                for j in 0..<perGroup {
                    meanDyW += w[firstChannel + j] * sumDy.data[firstPlane + j]
                    meanDyWXhat += w[firstChannel + j] * sumDyXhat.data[firstPlane + j]
                }
                meanDyW /= Float(n)
                meanDyWXhat /= Float(n)
                let dyScale = s * w[plane % channels], xScale = s * s * meanDyWXhat, shift = s * meanDyW
                let xc = xs + plane * area, gc = gy + plane * area, dst = gx + plane * area  // [H, W]
                for i in 0..<area { dst[i] += dyScale * gc[i] - xScale * (xc[i] - mu) - shift }
            }
        }
        FlopCounter.add(5 * x.count)
    }
}

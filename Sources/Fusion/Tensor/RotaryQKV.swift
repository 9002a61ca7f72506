// QK-norm and RoPE on the packed output of one stacked Q/K/V projection, in one pass over it:
//   q, k ← rotate(rmsNorm(q, w_q)), rotate(rmsNorm(k, w_k))  per head (over Dh; Chameleon §2.3's QK-norm,
//   when the weights are given), v passes through unchanged.
// The same values as `rmsNorm` then `rotaryEmbedding` on separate tensors (the test oracle), without the
// four intermediate [B, T, H, Dh] tensors and their eight passes over memory, forward and backward.
// Backward per head: undo the rotation (RoPE.swift: its transpose is the opposite angle), then RMSNorm's
// rule (Norms.swift): dx = rstd · (dy·w − x̂ · mean(dy·w·x̂)), dw += Σ dy·x̂, x̂ = x·rstd.
import Foundation

/// qkv [B, T, 3, H, Dh] → the same layout with queries and keys normalised (where a weight [Dh] is given)
/// and rotated by position; `positions` holds B·T positions, or T shared by every sequence.
public func rotaryQKV(_ qkv: Tensor, queryNorm: Tensor?, keyNorm: Tensor?, positions: [Int32],
                      base: Float = 10_000, epsilon: Float = 1e-6) -> Tensor {
    checkShape(qkv.rank == 5 && qkv.shape[2] == 3 && qkv.shape[4] % 2 == 0,
               "rotaryQKV: input \(qkv.shape) must be [B, T, 3, H, Dh] with even Dh")
    let (b, t, h, dh) = (qkv.shape[0], qkv.shape[1], qkv.shape[3], qkv.shape[4])
    checkShape(positions.count == b * t || positions.count == t, "rotaryQKV: \(positions.count) positions for B·T = \(b)·\(t)")
    for weight in [queryNorm, keyNorm].compactMap({ $0 }) {
        checkShape(weight.shape == [dh], "rotaryQKV: norm weight \(weight.name ?? "") of shape \(weight.shape) for heads of width \(dh)")
    }
    let d = h * dh, half = dh / 2, tokens = b * t, perSequence = positions.count == t ? t : 0
    let (cosines, sines) = RotaryTables.shared.tables(base: base, headWidth: dh, positions: positions)
    let out = Tensor(uninitializedShape: qkv.shape)
    let rstd = Tensor(uninitializedShape: [tokens, 2, h])  // saved for backward, per normalised head
    let xs = qkv.data, ys = out.data, cs = cosines.data, ss = sines.data
    let normWeights = [queryNorm?.data, keyNorm?.data]
    Parallel.forRanges(tokens, minimumPerThread: max(1, 8192 / (3 * d))) { range in
        for token in range {
            let position = Int(positions[perSequence > 0 ? token % perSequence : token])
            let c = cs + position * half, s = ss + position * half
            for part in 0..<2 {
                for head in 0..<h {
                    let x = xs + token * 3 * d + part * d + head * dh, y = ys + token * 3 * d + part * d + head * dh
                    if let w = normWeights[part] {
                        let scale = 1 / (dot(x, x, dh) / Float(dh) + epsilon).squareRoot()
                        rstd.data[(token * 2 + part) * h + head] = scale
                        for i in 0..<half {
                            let x1 = x[i] * scale * w[i], x2 = x[i + half] * scale * w[i + half]
                            y[i] = x1 * c[i] - x2 * s[i]
                            y[i + half] = x1 * s[i] + x2 * c[i]
                        }
                    } else {
                        for i in 0..<half {
                            let x1 = x[i], x2 = x[i + half]
                            y[i] = x1 * c[i] - x2 * s[i]
                            y[i + half] = x1 * s[i] + x2 * c[i]
                        }
                    }
                }
            }
            (ys + token * 3 * d + 2 * d).update(from: xs + token * 3 * d + 2 * d, count: d)
        }
    }
    // As the separate operations count: 4 per normalised element, 3 per rotated one.
    FlopCounter.add(tokens * d * (6 + (queryNorm == nil ? 0 : 4) + (keyNorm == nil ? 0 : 4)))
    return out.recordGraph(inputs: [qkv] + [queryNorm, keyNorm].compactMap { $0 }) { _, g in
        let (gx, fresh) = qkv.requiresGrad ? qkv.gradientBufferForWriting() : (nil, false)
        let wantsWeights = queryNorm?.requiresGrad == true || keyNorm?.requiresGrad == true
        let weightGradients = wantsWeights ? Tensor(zeros: [2 * dh]) : nil  // [w_q | w_k], summed over rows
        let gs = g.data
        accumulateOverRows(rows: tokens, width: 2 * dh, into: weightGradients?.data) { range, partialW in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: dh) { scratch in
                let gn = scratch.baseAddress!  // the gradient at the normalised, unrotated head
                for token in range {
                    let position = Int(positions[perSequence > 0 ? token % perSequence : token])
                    let c = cs + position * half, s = ss + position * half
                    for part in 0..<2 {
                        for head in 0..<h {
                            let index = token * 3 * d + part * d + head * dh
                            let gy = gs + index, x = xs + index
                            for i in 0..<half {
                                let g1 = gy[i], g2 = gy[i + half]
                                gn[i] = g1 * c[i] + g2 * s[i]
                                gn[i + half] = g2 * c[i] - g1 * s[i]
                            }
                            guard let w = normWeights[part] else {
                                if let gx { if fresh { (gx + index).update(from: gn, count: dh) } else { for i in 0..<dh { gx[index + i] += gn[i] } } }
                                continue
                            }
                            let scale = rstd.data[(token * 2 + part) * h + head]
                            if let partialW { for i in 0..<dh { partialW[part * dh + i] += gn[i] * x[i] * scale } }
                            if let gx {
                                let s2mean = scale * scale * (scale * dot(gn, w, x, dh) / Float(dh)), gr = gx + index
                                if fresh { for i in 0..<dh { gr[i] = scale * gn[i] * w[i] - x[i] * s2mean } }
                                else { for i in 0..<dh { gr[i] += scale * gn[i] * w[i] - x[i] * s2mean } }
                            }
                        }
                    }
                    if let gx {
                        let index = token * 3 * d + 2 * d
                        if fresh { (gx + index).update(from: gs + index, count: d) } else { for i in 0..<d { gx[index + i] += gs[index + i] } }
                    }
                }
            }
        }
        if let weightGradients {
            for (part, weight) in [queryNorm, keyNorm].enumerated() where weight?.requiresGrad == true {
                let target = weight!.gradientBuffer()
                for i in 0..<dh { target[i] += weightGradients.data[part * dh + i] }
            }
        }
        withExtendedLifetime((cosines, sines, rstd)) {}
    }
}

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
    checkShape(qkv.rank == 5 && qkv.shape[4] % 2 == 0, "rotaryQKV: input \(qkv.shape) must be [B, T, 3, H, Dh] with even Dh")
    return rotaryQKV(qkv, queryNorm: queryNorm, keyNorm: keyNorm, angles: RotaryAngles(positions: positions, base: base, headWidth: qkv.shape[4]),
                     epsilon: epsilon)
}

/// The same with the rotation angles of every token given (`RotaryAngles`: 1-D positions, or M-RoPE's three axes).
public func rotaryQKV(_ qkv: Tensor, queryNorm: Tensor?, keyNorm: Tensor?, angles: RotaryAngles, epsilon: Float = 1e-6) -> Tensor {
    checkShape(qkv.rank == 5 && qkv.shape[2] == 3 && qkv.shape[4] % 2 == 0,
               "rotaryQKV: input \(qkv.shape) must be [B, T, 3, H, Dh] with even Dh")
    let (b, t, h, dh) = (qkv.shape[0], qkv.shape[1], qkv.shape[3], qkv.shape[4])
    let positions = angles.rows
    checkShape(positions.count == b * t || positions.count == t, "rotaryQKV: \(positions.count) positions for B·T = \(b)·\(t)")
    checkShape(angles.cosines.shape[1] == dh / 2, "rotaryQKV: angles for heads of \(2 * angles.cosines.shape[1]), not \(dh)")
    for weight in [queryNorm, keyNorm].compactMap({ $0 }) {
        checkShape(weight.shape == [dh], "rotaryQKV: norm weight \(weight.name ?? "") of shape \(weight.shape) for heads of width \(dh)")
    }
    let d = h * dh, half = dh / 2, tokens = b * t, perSequence = positions.count == t ? t : 0
    let (cosines, sines) = (angles.cosines, angles.sines)
    let out = Tensor(uninitializedShape: qkv.shape)
    let rstd = Tensor(uninitializedShape: [tokens, 2, h])  // saved for backward, per normalised head
    let xs = qkv.data, ys = out.data, cs = cosines.data, ss = sines.data, rstds = rstd.data
    let normWeights = (queryNorm?.data, keyNorm?.data)
    positions.withUnsafeBufferPointer { positions in
        Parallel.forRanges(tokens, minimumPerThread: max(1, 8192 / (3 * d))) { range in
            for token in range {
                let position = Int(positions[perSequence > 0 ? token % perSequence : token])
                let c = cs + position * half, s = ss + position * half
                for part in 0..<2 {
                    for head in 0..<h {
                        let x = xs + token * 3 * d + part * d + head * dh, y = ys + token * 3 * d + part * d + head * dh
                        var scale: Float = 1
                        let w = part == 0 ? normWeights.0 : normWeights.1
                        if w != nil {
                            scale = 1 / (dot(x, x, dh) / Float(dh) + epsilon).squareRoot()
                            rstds[(token * 2 + part) * h + head] = scale
                        }
                        normaliseAndRotate(x, into: y, scale: scale, weight: w, cos: c, sin: s, half: half)
                    }
                }
                (ys + token * 3 * d + 2 * d).update(from: xs + token * 3 * d + 2 * d, count: d)
            }
        }
    }
    // As the separate operations count: 4 per normalised element, 3 per rotated one.
    FlopCounter.add(tokens * d * (6 + (queryNorm == nil ? 0 : 4) + (keyNorm == nil ? 0 : 4)))
    return out.recordGraph(inputs: [qkv] + [queryNorm, keyNorm].compactMap { $0 }) { _, g in
        let (gx, fresh) = qkv.requiresGrad ? qkv.gradientBufferForWriting() : (nil, false)
        let wantsWeights = queryNorm?.requiresGrad == true || keyNorm?.requiresGrad == true
        let weightGradients = wantsWeights ? Tensor(zeros: [2 * dh]) : nil  // [w_q | w_k], summed over rows
        let gs = g.data
        positions.withUnsafeBufferPointer { positions in
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
                                normaliseAndRotate(gy, into: gn, scale: 1, weight: nil, cos: c, sin: s, half: half, inverse: true)
                                guard let w = part == 0 ? normWeights.0 : normWeights.1 else {
                                    if let gx { if fresh { (gx + index).update(from: gn, count: dh) } else { for i in 0..<dh { gx[index + i] += gn[i] } } }
                                    continue
                                }
                                normBackward(gn, x: x, weight: w, scale: rstds[(token * 2 + part) * h + head], width: dh,
                                             weightGradient: partialW.map { $0 + part * dh }, into: gx.map { $0 + index }, fresh: fresh)
                            }
                        }
                        if let gx {
                            let index = token * 3 * d + 2 * d
                            if fresh { (gx + index).update(from: gs + index, count: d) } else { for i in 0..<d { gx[index + i] += gs[index + i] } }
                        }
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

/// One head: y = rotate(x · scale · w) (no weight: x · scale), the pairs (i, i + half) turned by the
/// position's angles; `inverse` turns them back (the transpose, for the backward pass). x and y must not overlap.
@inline(__always)
private func normaliseAndRotate(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, scale: Float,
                                weight w: UnsafePointer<Float>?, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>,
                                half: Int, inverse: Bool = false) {
    var i = 0
    let scale8 = SIMD8<Float>(repeating: scale), sign8 = SIMD8<Float>(repeating: inverse ? -1 : 1)
    while i + 8 <= half {  // eight pairs per step; a head of 32 is two steps
        var x1 = load8(x + i) * scale8, x2 = load8(x + i + half) * scale8
        if let w { x1 *= load8(w + i); x2 *= load8(w + i + half) }
        let cosine = load8(c + i), sine = load8(s + i) * sign8
        store8(x1 * cosine - x2 * sine, y + i)
        store8(x1 * sine + x2 * cosine, y + i + half)
        i += 8
    }
    let sign: Float = inverse ? -1 : 1
    while i < half {
        var x1 = x[i] * scale, x2 = x[i + half] * scale
        if let w { x1 *= w[i]; x2 *= w[i + half] }
        let sine = s[i] * sign
        y[i] = x1 * c[i] - x2 * sine
        y[i + half] = x1 * sine + x2 * c[i]
        i += 1
    }
}

/// RMSNorm's backward for one head (Norms.swift's rule), from gn, the gradient at its output before the
/// rotation: weightGradient += gn ∘ x·scale; dx = (or +=) scale·gn∘w − x·scale³·mean(gn∘w∘x).
@inline(__always)
private func normBackward(_ gn: UnsafePointer<Float>, x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, scale: Float,
                          width dh: Int, weightGradient partialW: UnsafeMutablePointer<Float>?,
                          into gr: UnsafeMutablePointer<Float>?, fresh: Bool) {
    let scale8 = SIMD8<Float>(repeating: scale), vectorEnd = dh / 8 * 8
    if let partialW {
        for i in stride(from: 0, to: vectorEnd, by: 8) { store8(load8(partialW + i) + load8(gn + i) * load8(x + i) * scale8, partialW + i) }
        for i in vectorEnd..<dh { partialW[i] += gn[i] * x[i] * scale }
    }
    guard let gr else { return }
    let s2mean = scale * scale * (scale * dot(gn, w, x, dh) / Float(dh)), s2mean8 = SIMD8<Float>(repeating: s2mean)
    for i in stride(from: 0, to: vectorEnd, by: 8) {
        let value = scale8 * load8(gn + i) * load8(w + i) - load8(x + i) * s2mean8
        store8(fresh ? value : load8(gr + i) + value, gr + i)
    }
    for i in vectorEnd..<dh {
        let value = scale * gn[i] * w[i] - x[i] * s2mean
        if fresh { gr[i] = value } else { gr[i] += value }
    }
}

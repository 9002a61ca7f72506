// Rotary position embedding (Su et al. 2021, RoFormer, §3.4), in the half-split layout Llama uses:
// for each head, pair i is (x[i], x[i + Dh/2]) and is rotated by angle pos · base^(−2i/Dh).
// The backward pass is the rotation by the opposite angle (a rotation's transpose is its inverse).
import Foundation

/// Rotates x [B, T, H, Dh] by position; `positions` holds B·T positions (documents packed in one
/// sequence may restart at 0) or just T, shared by every sequence of the batch.
public func rotaryEmbedding(_ x: Tensor, positions: [Int32], base: Float = 10_000) -> Tensor {
    checkShape(x.rank == 4 && x.shape[3] % 2 == 0, "rotaryEmbedding: input \(x.shape) must be [B, T, H, Dh] with even Dh")
    let (b, t, h, dh) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    checkShape(positions.count == b * t || positions.count == t,
               "rotaryEmbedding: \(positions.count) positions for B·T = \(b)·\(t)")
    let half = dh / 2
    // Per-token cos/sin tables [B·T, Dh/2]; rebuilt per call because positions vary per batch.
    let cosines = Tensor(uninitializedShape: [b * t, half]), sines = Tensor(uninitializedShape: [b * t, half])
    var frequencies = [Float](repeating: 0, count: half)
    for i in 0..<half { frequencies[i] = Foundation.pow(base, -2 * Float(i) / Float(dh)) }
    for token in 0..<(b * t) {
        let p = Float(positions[positions.count == t ? token % t : token])
        for i in 0..<half {
            cosines.data[token * half + i] = Foundation.cos(p * frequencies[i])
            sines.data[token * half + i] = Foundation.sin(p * frequencies[i])
        }
    }
    let out = Tensor(uninitializedShape: x.shape)
    rotate(x.data, into: out.data, tokens: b * t, heads: h, headWidth: dh, cosines.data, sines.data, inverse: false,
           accumulate: false)
    FlopCounter.add(3 * x.count)
    return out.recordGraph(inputs: [x]) { _, g in
        rotate(g.data, into: x.gradientBuffer(), tokens: b * t, heads: h, headWidth: dh, cosines.data, sines.data,
               inverse: true, accumulate: true)
    }
}

private func rotate(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>,
                    tokens: Int, heads: Int, headWidth: Int,
                    _ cosines: UnsafePointer<Float>, _ sines: UnsafePointer<Float>, inverse: Bool, accumulate: Bool) {
    let half = headWidth / 2, sign: Float = inverse ? -1 : 1
    Parallel.forRanges(tokens, minimumPerThread: max(1, 8192 / (heads * headWidth))) { r in
        for token in r {
            let c = cosines + token * half, s = sines + token * half
            for head in 0..<heads {
                let x = source + (token * heads + head) * headWidth, y = target + (token * heads + head) * headWidth
                for i in 0..<half {
                    let x1 = x[i], x2 = x[i + half], si = sign * s[i]
                    let y1 = x1 * c[i] - x2 * si, y2 = x1 * si + x2 * c[i]
                    if accumulate { y[i] += y1; y[i + half] += y2 } else { y[i] = y1; y[i + half] = y2 }
                }
            }
        }
    }
}

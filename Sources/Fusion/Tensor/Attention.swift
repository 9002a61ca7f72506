// Scaled dot-product attention (Vaswani et al. 2017, eq. 1), fused, over packed sequences:
//   S = Q·Kᵀ/√Dh + mask,  P = softmax(S),  O = P·V             per sequence b and head h
// Q, K, V and O keep the [B, T, H, Dh] layout the projections produce, so each head's T×Dh matrix is
// read in place with row stride H·Dh: no transposes or copies around the sgemms.
// Backward (P saved from the forward pass; recomputing it would cost another Q·Kᵀ):
//   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − rowsum(dP ∘ P)),  dQ = dS·K/√Dh,  dK = dSᵀ·Q/√Dh
import Foundation

/// Attention of q, k, v [B, T, H, Dh] under one mask per sequence; returns [B, T, H, Dh].
public func attention(query q: Tensor, key k: Tensor, value v: Tensor, masks: [AttentionMask]) -> Tensor {
    checkShape(q.rank == 4 && q.shape == k.shape && q.shape == v.shape,
               "attention: query \(q.shape), key \(k.shape), value \(v.shape) must all be [B, T, H, Dh]")
    let (b, t, h, dh) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
    checkShape(masks.count == b && masks.allSatisfy { $0.length == t },
               "attention: \(masks.count) masks of lengths \(masks.map(\.length)) for B = \(b), T = \(t)")
    let d = h * dh, scale = 1 / Float(dh).squareRoot()
    let bias = Tensor(uninitializedShape: [b, t, t])
    defer { withExtendedLifetime(bias) {} }  // its pointer is used after the last reference
    for (i, mask) in masks.enumerated() { mask.writeBias(into: bias.data + i * t * t) }

    let probabilities = Tensor(uninitializedShape: [b, h, t, t])  // P, saved for backward
    let out = Tensor(uninitializedShape: q.shape)
    for sequence in 0..<b {
        for head in 0..<h {
            let offset = sequence * t * d + head * dh
            let p = probabilities.data + (sequence * h + head) * t * t
            BLAS.sgemm(transA: false, transB: true, m: t, n: t, k: dh, alpha: scale,
                       a: q.data + offset, lda: d, b: k.data + offset, ldb: d, c: p, ldc: t)
            let maskBias = bias.data + sequence * t * t
            Parallel.forRows(t, width: t) { rows in
                for row in rows {
                    let pr = p + row * t, br = maskBias + row * t
                    for j in 0..<t { pr[j] += br[j] }
                    softmaxRow(pr, pr, t)
                }
            }
            BLAS.sgemm(transA: false, transB: false, m: t, n: dh, k: t,
                       a: p, lda: t, b: v.data + offset, ldb: d, c: out.data + offset, ldc: d)
        }
    }
    FlopCounter.add(5 * b * h * t * t)  // scale+mask+softmax per score
    return out.recordGraph(inputs: [q, k, v]) { _, g in
        let gq = q.requiresGrad ? q.gradientBuffer() : nil
        let gk = k.requiresGrad ? k.gradientBuffer() : nil
        let gv = v.requiresGrad ? v.gradientBuffer() : nil
        let dScores = Tensor(uninitializedShape: [t, t])  // dP, then dS in place
        defer { withExtendedLifetime(dScores) {} }
        for sequence in 0..<b {
            for head in 0..<h {
                let offset = sequence * t * d + head * dh
                let p = probabilities.data + (sequence * h + head) * t * t, ds = dScores.data
                if let gv {
                    BLAS.sgemm(transA: true, transB: false, m: t, n: dh, k: t, a: p, lda: t,
                               b: g.data + offset, ldb: d, beta: 1, c: gv + offset, ldc: d)
                }
                guard gq != nil || gk != nil else { continue }
                BLAS.sgemm(transA: false, transB: true, m: t, n: t, k: dh, a: g.data + offset, lda: d,
                           b: v.data + offset, ldb: d, c: ds, ldc: t)
                Parallel.forRows(t, width: t) { rows in
                    for row in rows {
                        let pr = p + row * t, dr = ds + row * t
                        var dot: Float = 0
                        for j in 0..<t { dot += dr[j] * pr[j] }
                        for j in 0..<t { dr[j] = pr[j] * (dr[j] - dot) }
                    }
                }
                if let gq {
                    BLAS.sgemm(transA: false, transB: false, m: t, n: dh, k: t, alpha: scale, a: ds, lda: t,
                               b: k.data + offset, ldb: d, beta: 1, c: gq + offset, ldc: d)
                }
                if let gk {
                    BLAS.sgemm(transA: true, transB: false, m: t, n: dh, k: t, alpha: scale, a: ds, lda: t,
                               b: q.data + offset, ldb: d, beta: 1, c: gk + offset, ldc: d)
                }
            }
        }
        FlopCounter.add(4 * b * h * t * t)
    }
}

// Attention of Tq queries over Tk keys and values of another source (Vaswani et al. 2017, eq. 1):
//   S = Q·Kᵀ/√Dh + mask,  P = softmax(S),  O = P·V             per sequence b and head h
// what the understanding side reads images with: Flamingo's gated cross-attention (text positions over
// an image's features), the Perceiver Resampler's and the Q-Former's learned queries. Dense: the keys
// are a few images' few dozen features, so the whole Tq×Tk score matrix is cheap.
//
// A query that may see no key (text before any image, a document without one) gets zeros and passes
// no gradient: the empty sum, where softmax has no row to normalise.
// Backward as the self-attention kernels (`Attention.swift`), P saved from the forward pass:
//   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − rowsum(dP ∘ P)),  dQ = dS·K/√Dh,  dK = dSᵀ·Q/√Dh
//
// Shape alphabet: B sequences, Tq queries, Tk keys, H heads, Dh head width.

/// Which keys each query may see: B masks of Tq·Tk flags, row-major (query-major); nil allows all.
public typealias CrossAttentionMask = [[Bool]]

/// Attention of q [B, Tq, H, Dh] over k, v [B, Tk, H, Dh]; returns [B, Tq, H, Dh].
public func crossAttention(query q: Tensor, key k: Tensor, value v: Tensor, allowed: CrossAttentionMask? = nil) -> Tensor {
    checkShape(q.rank == 4 && k.rank == 4 && k.shape == v.shape && q.shape[0] == k.shape[0] && q.shape[2...] == k.shape[2...],
               "crossAttention: query \(q.shape) must be [B, Tq, H, Dh] and key \(k.shape), value \(v.shape) [B, Tk, H, Dh]")
    let (b, tq, h, dh) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]), tk = k.shape[1]
    if let allowed {
        checkShape(allowed.count == b && allowed.allSatisfy { $0.count == tq * tk },
                   "crossAttention: \(allowed.count) masks of \(allowed.map(\.count)) flags for B = \(b), Tq·Tk = \(tq * tk)")
    }
    let d = h * dh, scale = 1 / Float(dh).squareRoot()
    let probabilities = Tensor(zeros: [b, h, tq, tk])  // P, saved for backward; empty rows stay 0
    let out = Tensor(zeros: q.shape)
    guard tk > 0 else { return out }
    // Rows of sequence s with at least one visible key.
    let live: [[Bool]] = (0..<b).map { s in
        (0..<tq).map { i in allowed.map { $0[s].dropFirst(i * tk).prefix(tk).contains(true) } ?? true }
    }
    var scoreCount = 0
    for s in 0..<b {
        for head in 0..<h {
            let qOffset = s * tq * d + head * dh, kOffset = s * tk * d + head * dh
            let p = probabilities.data + (s * h + head) * tq * tk
            BLAS.sgemm(transA: false, transB: true, m: tq, n: tk, k: dh, alpha: scale,
                       a: q.data + qOffset, lda: d, b: k.data + kOffset, ldb: d, c: p, ldc: tk)
            for i in 0..<tq {
                let row = p + i * tk
                guard live[s][i] else { for j in 0..<tk { row[j] = 0 }; continue }
                if let mask = allowed?[s] {
                    for j in 0..<tk where !mask[i * tk + j] { row[j] = -.infinity }
                }
                softmaxRow(row, row, tk)
                scoreCount += tk
            }
            BLAS.sgemm(transA: false, transB: false, m: tq, n: dh, k: tk,
                       a: p, lda: tk, b: v.data + kOffset, ldb: d, c: out.data + qOffset, ldc: d)
        }
    }
    FlopCounter.add(5 * scoreCount)  // scale, mask and softmax per score
    return out.recordGraph(inputs: [q, k, v]) { _, g in
        let gq = q.requiresGrad ? q.gradientBuffer() : nil
        let gk = k.requiresGrad ? k.gradientBuffer() : nil
        let gv = v.requiresGrad ? v.gradientBuffer() : nil
        let dScores = Tensor(uninitializedShape: [tq, tk])  // dP, then dS in place
        defer { withExtendedLifetime(dScores) {} }
        for s in 0..<b {
            for head in 0..<h {
                let qOffset = s * tq * d + head * dh, kOffset = s * tk * d + head * dh
                let p = probabilities.data + (s * h + head) * tq * tk, ds = dScores.data
                if let gv {
                    BLAS.sgemm(transA: true, transB: false, m: tk, n: dh, k: tq, a: p, lda: tk,
                               b: g.data + qOffset, ldb: d, beta: 1, c: gv + kOffset, ldc: d)
                }
                guard gq != nil || gk != nil else { continue }
                BLAS.sgemm(transA: false, transB: true, m: tq, n: tk, k: dh, a: g.data + qOffset, lda: d,
                           b: v.data + kOffset, ldb: d, c: ds, ldc: tk)
                softmaxBackwardInPlace(probabilities: p, gradient: ds, rows: tq, width: tk)
                if let gq {
                    BLAS.sgemm(transA: false, transB: false, m: tq, n: dh, k: tk, alpha: scale, a: ds, lda: tk,
                               b: k.data + kOffset, ldb: d, beta: 1, c: gq + qOffset, ldc: d)
                }
                if let gk {
                    BLAS.sgemm(transA: true, transB: false, m: tk, n: dh, k: tq, alpha: scale, a: ds, lda: tk,
                               b: q.data + qOffset, ldb: d, beta: 1, c: gk + kOffset, ldc: d)
                }
            }
        }
        FlopCounter.add(4 * scoreCount)
    }
}

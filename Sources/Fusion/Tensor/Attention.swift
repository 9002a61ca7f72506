// Scaled dot-product attention (Vaswani et al. 2017, eq. 1), fused, over packed sequences:
//   S = Q·Kᵀ/√Dh + mask,  P = softmax(S),  O = P·V             per sequence b and head h
// Q, K, V and O keep the [B, T, H, Dh] layout the projections produce, so each head's T×Dh matrix is
// read in place with row stride H·Dh: no transposes or copies around the sgemms. Q, K and V may also
// come packed in one [B, T, 3, H, Dh] tensor (the fused QKV projection's output, `attention(packed:)`),
// read in place with row stride 3·H·Dh, their gradients written into one buffer of that layout.
// Backward (P saved from the forward pass; recomputing it would cost another Q·Kᵀ):
//   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − rowsum(dP ∘ P)),  dQ = dS·K/√Dh,  dK = dSᵀ·Q/√Dh
//
// Two kernels compute this:
// - `attention` (blocked): every mask the recipes build lets query i see one interval of keys
//   (`AttentionMask.keyIntervals`), so the queries are cut into blocks of `attentionBlockRows` and
//   each block computes scores only against the keys its rows may see (for a causal T = 256 with
//   blocks of 64: 62.5 % of the T×T scores; fewer with several packed documents). The (sequence,
//   head) pairs are split over the cores, each pair's sgemms on its own thread: one 256×256×64 product
//   is too small to split. FLOPs are counted as computed.
// - `denseAttention`: the full T×T scores for any mask (`crossAttention` with the mask's flags); the
//   blocked kernel's oracle in the tests and its fallback for a mask that is not one interval per row.
import Foundation

/// Query rows per block of the blocked kernel: small enough that causal blocks skip most masked
/// keys, large enough that each block's sgemms stay efficient (measured: 64 beats 32 and 128 at Dh 32–64).
let attentionBlockRows = 64

/// Attention of q, k, v [B, T, H, Dh] under one mask per sequence; returns [B, T, H, Dh].
public func attention(query q: Tensor, key k: Tensor, value v: Tensor, masks: [AttentionMask]) -> Tensor {
    checkShape(q.rank == 4 && q.shape == k.shape && q.shape == v.shape,
               "attention: query \(q.shape), key \(k.shape), value \(v.shape) must all be [B, T, H, Dh]")
    guard let (lo, hi) = keyIntervals(masks, batch: q.shape[0], length: q.shape[1]) else {
        return denseAttention(query: q, key: k, value: v, masks: masks)
    }
    let operands = AttentionOperands(shape: q.shape, rowStride: q.shape[2] * q.shape[3], q: q.data, k: k.data, v: v.data,
                                     inputs: [q, k, v]) {
        (q.requiresGrad ? q.gradientBufferForWriting() : nil, k.requiresGrad ? k.gradientBufferForWriting() : nil,
         v.requiresGrad ? v.gradientBufferForWriting() : nil)
    }
    return blockedAttention(operands, keyLow: lo, keyHigh: hi)
}

/// Attention of queries, keys and values packed in one tensor [B, T, 3, H, Dh] (the output of one stacked
/// Q/K/V projection), read in place; returns [B, T, H, Dh], the same values as the three-tensor form.
public func attention(packed qkv: Tensor, masks: [AttentionMask]) -> Tensor {
    checkShape(qkv.rank == 5 && qkv.shape[2] == 3, "attention(packed:): input \(qkv.shape) must be [B, T, 3, H, Dh]")
    let (b, t, h, dh) = (qkv.shape[0], qkv.shape[1], qkv.shape[3], qkv.shape[4])
    guard let (lo, hi) = keyIntervals(masks, batch: b, length: t) else {
        let part = { (i: Int) in qkv.narrow(axis: 2, start: i, length: 1).reshaped([b, t, h, dh]) }
        return denseAttention(query: part(0), key: part(1), value: part(2), masks: masks)
    }
    let d = h * dh
    let operands = AttentionOperands(shape: [b, t, h, dh], rowStride: 3 * d, q: qkv.data, k: qkv.data + d, v: qkv.data + 2 * d,
                                     inputs: [qkv]) {
        guard qkv.requiresGrad else { return (nil, nil, nil) }
        let (g, fresh) = qkv.gradientBufferForWriting()  // fresh: every part is written whole, below
        return ((g, fresh), (g + d, fresh), (g + 2 * d, fresh))
    }
    return blockedAttention(operands, keyLow: lo, keyHigh: hi)
}

/// The key interval of every query row (B·T of each bound), or nil when some mask is not one interval
/// per row (then only the dense kernel applies).
private func keyIntervals(_ masks: [AttentionMask], batch b: Int, length t: Int) -> ([Int32], [Int32])? {
    checkShape(masks.count == b && masks.allSatisfy { $0.length == t },
               "attention: \(masks.count) masks of lengths \(masks.map(\.length)) for B = \(b), T = \(t)")
    var lo: [Int32] = [], hi: [Int32] = []
    lo.reserveCapacity(b * t); hi.reserveCapacity(b * t)
    for mask in masks {
        guard let intervals = mask.keyIntervals() else { return nil }
        lo += intervals.lo
        hi += intervals.hi
    }
    return (lo, hi)
}

/// Where the blocked kernel reads Q, K and V ([B, T, H, Dh] matrices with row stride `rowStride`: H·Dh for
/// separate tensors, 3·H·Dh packed) and how it gets their gradient buffers (nil: not needed; fresh:
/// uninitialised, to be written whole) once the backward pass runs.
struct AttentionOperands {
    typealias Gradient = (pointer: UnsafeMutablePointer<Float>, fresh: Bool)
    let shape: [Int]  // [B, T, H, Dh]
    let rowStride: Int
    let q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
    let inputs: [Tensor]  // the tensors q, k, v point into (kept alive by the recorded rule)
    let gradients: () -> (q: Gradient?, k: Gradient?, v: Gradient?)
}

/// Chunks of (sequence, head) pairs: several per core, so that a core lost to another process for a
/// while leaves its later chunks to the other core instead of holding up the whole call.
func pairChunks(_ pairs: Int) -> Int { Parallel.threadCount <= 1 ? 1 : min(pairs, 8 * Parallel.threadCount) }

/// Runs `body(pair, chunk)` for pair in 0..<pairs, in `chunks` fixed contiguous chunks spread over the
/// cores (each sgemm inside on its caller's thread; one chunk: all on the calling thread). Each pair's
/// values do not depend on the split; `chunk` indexes per-chunk scratch memory.
func forEachPair(_ pairs: Int, chunks: Int, _ body: (_ pair: Int, _ chunk: Int) -> Void) {
    if chunks <= 1 { for pair in 0..<pairs { body(pair, 0) }; return }
    Parallel.perform(iterations: chunks) { c in
        for pair in (pairs * c / chunks)..<(pairs * (c + 1) / chunks) { body(pair, c) }
    }
}

/// The blocked kernel; row i of sequence s may see keys keyLow[s·T+i] ..< keyHigh[s·T+i]. Q, K, V rows
/// are `rs` floats apart, the output's and its gradient's d = H·Dh.
func blockedAttention(_ operands: AttentionOperands, keyLow: [Int32], keyHigh: [Int32]) -> Tensor {
    let (b, t, h, dh) = (operands.shape[0], operands.shape[1], operands.shape[2], operands.shape[3])
    let d = h * dh, rs = operands.rowStride, scale = 1 / Float(dh).squareRoot()
    let blockRows = min(attentionBlockRows, t), blocks = (t + blockRows - 1) / blockRows
    // Key range [blockLow, blockHigh) of each (sequence, query block): the union of its rows' intervals.
    var blockLow = [Int](repeating: 0, count: b * blocks), blockHigh = [Int](repeating: 0, count: b * blocks)
    var scoreCount = 0, allowedCount = 0  // Σ rows·width over blocks; Σ allowed keys over rows
    for s in 0..<b {
        for block in 0..<blocks {
            let r0 = block * blockRows, r1 = min(t, r0 + blockRows)
            var low = t, high = 0
            for i in r0..<r1 {
                low = min(low, Int(keyLow[s * t + i]))
                high = max(high, Int(keyHigh[s * t + i]))
                allowedCount += Int(keyHigh[s * t + i] - keyLow[s * t + i])
            }
            blockLow[s * blocks + block] = low
            blockHigh[s * blocks + block] = high
            scoreCount += (r1 - r0) * (high - low)
        }
    }
    // P [B, H, T, T], saved for backward; only each block's rectangle of key columns is written.
    let probabilities = Tensor(uninitializedShape: [b, h, t, t])
    let out = Tensor(uninitializedShape: operands.shape)
    let qs = operands.q, ks = operands.k, vs = operands.v, os = out.data, ps = probabilities.data
    keyLow.withUnsafeBufferPointer { lo in
        keyHigh.withUnsafeBufferPointer { hi in
            forEachPair(b * h, chunks: pairChunks(b * h)) { pair, _ in
                let sequence = pair / h, head = pair % h
                // `input` indexes Q, K, V (row stride rs); `offset` the output and its gradient (row stride d).
                let input = sequence * t * rs + head * dh, offset = sequence * t * d + head * dh, p = ps + pair * t * t
                for block in 0..<blocks {
                    let r0 = block * blockRows, r1 = min(t, r0 + blockRows), rows = r1 - r0
                    let kLow = blockLow[sequence * blocks + block], width = blockHigh[sequence * blocks + block] - kLow
                    BLAS.sgemmUncounted(transA: false, transB: true, m: rows, n: width, k: dh, alpha: scale,
                                        a: qs + input + r0 * rs, lda: rs, b: ks + input + kLow * rs, ldb: rs,
                                        c: p + r0 * t + kLow, ldc: t)
                    for i in r0..<r1 {
                        let row = p + i * t, first = Int(lo[sequence * t + i]), end = Int(hi[sequence * t + i])
                        for j in kLow..<first { row[j] = 0 }
                        for j in end..<(kLow + width) { row[j] = 0 }
                        softmaxRow(row + first, row + first, end - first)
                    }
                    BLAS.sgemmUncounted(transA: false, transB: false, m: rows, n: dh, k: width,
                                        a: p + r0 * t + kLow, lda: t, b: vs + input + kLow * rs, ldb: rs,
                                        c: os + offset + r0 * d, ldc: d)
                }
            }
        }
    }
    FlopCounter.add(h * (4 * dh * scoreCount + 5 * allowedCount))  // Q·Kᵀ and P·V; scale+softmax per allowed score
    return out.recordGraph(inputs: operands.inputs) { _, g in
        // dQ's rows are written by exactly one block each, so a fresh buffer needs no zeros; dK and dV
        // rows are summed over blocks and are zeroed per pair (in parallel) when fresh.
        let gradients = operands.gradients()
        let (gq, freshQ) = (gradients.q?.pointer, gradients.q?.fresh ?? false)
        let (gk, freshK) = (gradients.k?.pointer, gradients.k?.fresh ?? false)
        let (gv, freshV) = (gradients.v?.pointer, gradients.v?.fresh ?? false)
        let chunks = pairChunks(b * h)  // read once: the scratch and the split must agree
        let scratch = Tensor(uninitializedShape: [chunks, blockRows, t])  // dP, then dS in place, per chunk
        let gs = g.data, scratchData = scratch.data
        keyLow.withUnsafeBufferPointer { lo in
            keyHigh.withUnsafeBufferPointer { hi in
                forEachPair(b * h, chunks: chunks) { pair, worker in
                    let sequence = pair / h, head = pair % h
                    let input = sequence * t * rs + head * dh, offset = sequence * t * d + head * dh, p = ps + pair * t * t
                    let ds = scratchData + worker * blockRows * t
                    for (buffer, fresh) in [(gk, freshK), (gv, freshV)] where fresh {
                        for i in 0..<t { (buffer! + input + i * rs).update(repeating: 0, count: dh) }
                    }
                    for block in 0..<blocks {
                        let r0 = block * blockRows, r1 = min(t, r0 + blockRows), rows = r1 - r0
                        let kLow = blockLow[sequence * blocks + block], width = blockHigh[sequence * blocks + block] - kLow
                        let pBlock = p + r0 * t + kLow, gBlock = gs + offset + r0 * d
                        if let gv {  // dV[keys] += Pᵀ·dO
                            BLAS.sgemmUncounted(transA: true, transB: false, m: width, n: dh, k: rows, a: pBlock, lda: t,
                                                b: gBlock, ldb: d, beta: 1, c: gv + input + kLow * rs, ldc: rs)
                        }
                        guard gq != nil || gk != nil else { continue }
                        // dP = dO·Vᵀ [rows, width]
                        BLAS.sgemmUncounted(transA: false, transB: true, m: rows, n: width, k: dh, a: gBlock, lda: d,
                                            b: vs + input + kLow * rs, ldb: rs, c: ds, ldc: width)
                        for i in 0..<rows {  // dS = P ∘ (dP − Σ dP∘P); P is 0 on masked keys, so is dS
                            let pr = pBlock + i * t, dr = ds + i * width
                            let first = Int(lo[sequence * t + r0 + i]) - kLow, end = Int(hi[sequence * t + r0 + i]) - kLow
                            let dot = Fusion.dot(dr + first, pr + first, end - first)
                            for j in 0..<first { dr[j] = 0 }
                            for j in first..<end { dr[j] = pr[j] * (dr[j] - dot) }
                            for j in end..<width { dr[j] = 0 }
                        }
                        if let gq {  // dQ[rows] (+)= dS·K/√Dh
                            BLAS.sgemmUncounted(transA: false, transB: false, m: rows, n: dh, k: width, alpha: scale,
                                                a: ds, lda: width, b: ks + input + kLow * rs, ldb: rs,
                                                beta: freshQ ? 0 : 1, c: gq + input + r0 * rs, ldc: rs)
                        }
                        if let gk {  // dK[keys] += dSᵀ·Q/√Dh
                            BLAS.sgemmUncounted(transA: true, transB: false, m: width, n: dh, k: rows, alpha: scale,
                                                a: ds, lda: width, b: qs + input + r0 * rs, ldb: rs,
                                                beta: 1, c: gk + input + kLow * rs, ldc: rs)
                        }
                    }
                }
            }
        }
        withExtendedLifetime((scratch, probabilities)) {}
        FlopCounter.add(h * (8 * dh * scoreCount + 4 * allowedCount))
    }
}

/// The dense kernel: full T×T scores, any mask: `crossAttention` over the sequence's own keys with the
/// mask's flags (no row is empty: padding sees itself). Same contract as `attention`.
func denseAttention(query q: Tensor, key k: Tensor, value v: Tensor, masks: [AttentionMask]) -> Tensor {
    checkShape(q.rank == 4 && q.shape == k.shape && q.shape == v.shape,
               "attention: query \(q.shape), key \(k.shape), value \(v.shape) must all be [B, T, H, Dh]")
    let (b, t) = (q.shape[0], q.shape[1])
    checkShape(masks.count == b && masks.allSatisfy { $0.length == t },
               "attention: \(masks.count) masks of lengths \(masks.map(\.length)) for B = \(b), T = \(t)")
    let allowed = masks.map { mask in (0..<(t * t)).map { mask.allows(query: $0 / t, key: $0 % t) } }
    return crossAttention(query: q, key: k, value: v, allowed: allowed)
}

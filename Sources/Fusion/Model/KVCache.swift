// Key/value cache for sampling (Pope et al. 2022, "Efficiently Scaling Transformer Inference", §2):
// the keys and values of positions already processed are kept per layer, so each new position costs
// one row of attention instead of a whole forward pass over the prefix.
//
// Shapes: keys and values [B, C, H, Dh] per layer, C = capacity; the first `length` are filled.
import Foundation

public final class KVCache {
    /// How the new positions of one call attend to each other (they always see the whole cache).
    public enum NewTokenAttention {
        case causal
        case bidirectional
        /// Causal, except that new positions with the same span id ≥ 0 see each other (an image in a
        /// prompt, for the recipes with bidirectional image attention); B·Tn ids, row-major.
        case spans([Int32])

        func allows(query i: Int, key j: Int, row: Int, newCount: Int) -> Bool {
            switch self {
            case .causal: return j <= i
            case .bidirectional: return true
            case .spans(let ids):
                let base = row * newCount
                return j <= i || (ids[base + i] >= 0 && ids[base + i] == ids[base + j])
            }
        }
    }

    public let batch: Int, capacity: Int, heads: Int, headWidth: Int
    public private(set) var length = 0
    var keys: [Tensor], values: [Tensor]  // per layer [B, C, H, Dh]
    /// keyIsValid[b][j]: position j of sequence b is a real token (false: padding nobody attends to).
    var keyIsValid: [[Bool]]

    public init(config: TransformerConfig, batch: Int, capacity: Int? = nil) {
        self.batch = batch
        self.capacity = capacity ?? config.contextLength
        heads = config.heads
        headWidth = config.headWidth
        keys = (0..<config.layers).map { _ in Tensor(zeros: [batch, capacity ?? config.contextLength, config.heads, config.headWidth]) }
        values = (0..<config.layers).map { _ in Tensor(zeros: [batch, capacity ?? config.contextLength, config.heads, config.headWidth]) }
        keyIsValid = Array(repeating: Array(repeating: false, count: capacity ?? config.contextLength), count: batch)
    }

    /// Forgets every cached position after the first `length` (e.g. to re-sample from a shared prompt).
    public func truncate(to newLength: Int) {
        precondition(newLength >= 0 && newLength <= length, "KVCache.truncate(to: \(newLength)) with \(length) cached")
        length = newLength
    }

    /// Attention of new queries q [B, Tn, H, Dh] over the cache plus the new keys k and values v, which
    /// are written at positions length..<length+Tn. Returns [B, Tn, H, Dh].
    func attend(layer: Int, query q: Tensor, key k: Tensor, value v: Tensor,
                newTokens: NewTokenAttention, valid: [[Bool]]?) -> Tensor {
        let (b, tn) = (q.shape[0], q.shape[1]), d = heads * headWidth, start = length, tk = start + tn
        precondition(b == batch && q.shape[2] == heads && q.shape[3] == headWidth, "KVCache: query \(q.shape) for a cache of [\(batch), \(capacity), \(heads), \(headWidth)]")
        if case .spans(let ids) = newTokens { precondition(ids.count == b * tn, "KVCache: \(ids.count) span ids for B·Tn = \(b)·\(tn) new positions") }
        let cachedKeys = keys[layer], cachedValues = values[layer]
        for sequence in 0..<b {  // append this call's keys and values
            (cachedKeys.data + (sequence * capacity + start) * d).update(from: k.data + sequence * tn * d, count: tn * d)
            (cachedValues.data + (sequence * capacity + start) * d).update(from: v.data + sequence * tn * d, count: tn * d)
        }
        // Additive mask [Tn, Tk] per sequence: cached keys if valid, new keys causally or fully.
        let bias = Tensor(uninitializedShape: [b, tn, tk])
        for sequence in 0..<b {
            let row = bias.data + sequence * tn * tk
            for i in 0..<tn {
                for j in 0..<tk {
                    let isValid = j < start ? keyIsValid[sequence][j] : (valid?[sequence][j - start] ?? true)
                    let ordered = j < start || newTokens.allows(query: i, key: j - start, row: sequence, newCount: tn)
                    row[i * tk + j] = (isValid && ordered) || j == start + i ? 0 : -.infinity
                }
            }
        }
        let out = Tensor(uninitializedShape: q.shape)
        let scale = 1 / Float(headWidth).squareRoot(), pairs = b * heads
        // The (sequence, head) pairs run on both cores when there is enough work to pay for waking the
        // second (a one-position step of autoregressive sampling is not); each pair's values are the same
        // either way. Products run on the calling thread and are counted once, below.
        let chunks = pairs * tn * tk * headWidth >= Self.parallelMultiplyAdds ? pairChunks(pairs) : 1
        let scores = Tensor(uninitializedShape: [chunks, tn, tk])  // per chunk
        let qs = q.data, ks = cachedKeys.data, vs = cachedValues.data, os = out.data, biases = bias.data, scratch = scores.data
        let (heads, dh, capacity) = (heads, headWidth, capacity)
        let attendPair = { (pair: Int, chunk: Int) in
            let sequence = pair / heads, head = pair % heads
            let qOffset = sequence * tn * d + head * dh, cOffset = sequence * capacity * d + head * dh
            let s = scratch + chunk * tn * tk, maskBias = biases + sequence * tn * tk
            BLAS.sgemmUncounted(transA: false, transB: true, m: tn, n: tk, k: dh, alpha: scale,
                                a: qs + qOffset, lda: d, b: ks + cOffset, ldb: d, c: s, ldc: tk)
            for i in 0..<tn {
                let row = s + i * tk
                for j in 0..<tk { row[j] += maskBias[i * tk + j] }
                softmaxRow(row, row, tk)
            }
            BLAS.sgemmUncounted(transA: false, transB: false, m: tn, n: dh, k: tk,
                                a: s, lda: tk, b: vs + cOffset, ldb: d, c: os + qOffset, ldc: d)
        }
        withExtendedLifetime((bias, scores)) { forEachPair(pairs, chunks: chunks, attendPair) }
        FlopCounter.add(b * heads * tn * tk * (4 * headWidth + 5))
        return out
    }

    /// The fewest multiply-adds (Q·Kᵀ over all pairs) for which `attend` spreads its pairs over the cores.
    static let parallelMultiplyAdds = 1 << 18

    /// Called once per forward pass after every layer has attended.
    func finish(newCount: Int, valid: [[Bool]]?, commit: Bool) {
        guard commit else { return }
        for sequence in 0..<batch {
            for i in 0..<newCount { keyIsValid[sequence][length + i] = valid?[sequence][i] ?? true }
        }
        length += newCount
    }
}

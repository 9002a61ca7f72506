// Lookup-free quantisation (Yu et al. 2023, "Language Model Beats Diffusion — Tokenizer is Key to
// Visual Generation", MAGVIT-v2, arXiv 2310.05737, §3.1, eq. 3–5): the latent is b channels, each
// quantised to its sign, so the codebook is the 2^b corners of {−1, 1}^b and needs no lookup. Show-o
// uses this tokenizer.
//
// Shapes: N = B·h·w latent vectors, b bits, K = 2^b codes.
//
//   q_i   = sign(z_i) ∈ {−1, 1}   (z_i = 0 goes to −1)            index = Σ_i 2^i·[z_i > 0]      (eq. 3–4)
//   z_q   = z + sg(q − z)          (straight-through)
//   loss  = β·‖z − sg(q)‖² + w·(E_n[H(p(·|z_n))] − γ·H(E_n[p(·|z_n)]))                          (eq. 5)
//   p(c | z) = softmax_c(−‖z − c‖² / τ) over the K corners c: the per-sample entropy term makes each
//   assignment confident, the batch-entropy term spreads the batch over the whole codebook.
// The entropy terms are one fused op (`lfqEntropy`) with a hand-written backward pass.
import Foundation

/// The 2^b corners of {−1, 1}^b as rows [K, b]: row k has +1 in column i where bit i of k is set.
public func lfqCorners(bits: Int) -> Tensor {
    let k = 1 << bits
    let out = Tensor(uninitializedShape: [k, bits])  // [K, b]
    for code in 0..<k { for i in 0..<bits { out.data[code * bits + i] = (code >> i) & 1 == 1 ? 1 : -1 } }
    return out
}

/// The entropy terms of MAGVIT-v2 eq. 5 for vectors z [N, b] against `corners` [K, b]:
/// returns [2] = (E_n[H(p_n)], H(p̄)) in nats, with p_n = softmax(l_n), l_n,k = 2·z_n·c_k / τ (equal to
/// −‖z_n − c_k‖²/τ up to a per-row constant, which softmax ignores), p̄ = mean_n p_n.
///
/// Backward (derived from H(p) = −Σ p log p with p = softmax(l)):
///   ∂H(p_n)/∂l_n,j = −p_n,j·(log p_n,j + H(p_n))
///   ∂H(p̄)/∂l_n,j  = (1/N)·p_n,j·(−log p̄_j − Σ_k p_n,k·(−log p̄_k))
///   ∂/∂z_n = (2/τ)·Σ_j ∂/∂l_n,j · c_j        (one sgemm)
public func lfqEntropy(_ z: Tensor, corners: Tensor, temperature: Float) -> Tensor {
    checkShape(z.rank == 2 && corners.rank == 2 && z.shape[1] == corners.shape[1],
               "lfqEntropy: z \(z.shape) and corners \(corners.shape) must be [N, b] and [K, b]")
    let n = z.shape[0], bits = z.shape[1], k = corners.shape[0]
    let scale = 2 / temperature
    let probabilities = Tensor(uninitializedShape: [n, k])  // saved for backward: p_n,k
    let rowEntropy = Tensor(uninitializedShape: [n])  // saved for backward: H(p_n)
    let p = probabilities.data, hRow = rowEntropy.data
    // l = (2/τ)·z·Cᵀ, then each row becomes its softmax in place.
    BLAS.sgemm(transA: false, transB: true, m: n, n: k, k: bits, alpha: scale,
               a: z.data, lda: bits, b: corners.data, ldb: bits, c: p, ldc: k)
    Parallel.forRows(n, width: k) { range in
        for row in range {
            let pr = p + row * k
            softmaxRow(pr, pr, k)
            var entropy: Float = 0
            for j in 0..<k where pr[j] > 0 { entropy -= pr[j] * Foundation.log(pr[j]) }
            hRow[row] = entropy
        }
    }
    var meanP = [Double](repeating: 0, count: k)  // p̄
    var meanH = 0.0
    for row in 0..<n {
        meanH += Double(hRow[row])
        let pr = p + row * k
        for j in 0..<k { meanP[j] += Double(pr[j]) }
    }
    meanH /= Double(max(n, 1))
    var batchH = 0.0
    for j in 0..<k {
        meanP[j] /= Double(max(n, 1))
        if meanP[j] > 0 { batchH -= meanP[j] * Foundation.log(meanP[j]) }
    }
    FlopCounter.add(2 * n * k * bits + 8 * n * k)
    let out = Tensor([Float(meanH), Float(batchH)], shape: [2])
    // −log p̄_j, saved for backward (0 where p̄_j = 0: then every p_n,j is 0 and the term vanishes).
    let negLogMean = meanP.map { $0 > 0 ? Float(-Foundation.log($0)) : 0 }
    return out.recordGraph(inputs: [z]) { _, g in
        let gPerSample = g.data[0] / Float(max(n, 1)), gBatch = g.data[1] / Float(max(n, 1))
        let dl = Tensor(uninitializedShape: [n, k])  // ∂loss/∂l
        negLogMean.withUnsafeBufferPointer { nlm in
            Parallel.forRows(n, width: k) { range in
                for row in range {
                    let pr = p + row * k, dr = dl.data + row * k, h = hRow[row]
                    var expected: Float = 0  // Σ_k p_n,k·(−log p̄_k)
                    for j in 0..<k { expected += pr[j] * nlm[j] }
                    for j in 0..<k {
                        let logP = pr[j] > 0 ? Foundation.log(pr[j]) : 0
                        dr[j] = -gPerSample * pr[j] * (logP + h) + gBatch * pr[j] * (nlm[j] - expected)
                    }
                }
            }
        }
        // dz [N, b] += (2/τ)·dl [N, K] · C [K, b]
        BLAS.sgemm(transA: false, transB: false, m: n, n: bits, k: k, alpha: scale,
                   a: dl.data, lda: k, b: corners.data, ldb: bits, beta: 1, c: z.gradientBuffer(), ldc: bits)
        FlopCounter.add(2 * n * k * bits + 6 * n * k)
        withExtendedLifetime(probabilities) {}
    }
}

public final class LookupFreeQuantizer: Module {
    let corners: Tensor  // [K, b], a fixed table (not a parameter)
    let config: AutoencoderConfig

    public init(config: AutoencoderConfig) {
        self.config = config
        corners = lfqCorners(bits: config.lfqBits)
    }

    /// Vectors [N, b] → their sign vectors [N, b] and indices.
    func quantize(_ flat: Tensor) -> (values: Tensor, codes: [Int32]) {
        let n = flat.shape[0], bits = flat.shape[1]
        let values = Tensor(uninitializedShape: flat.shape)
        var codes = [Int32](repeating: 0, count: n)
        for row in 0..<n {
            var index: Int32 = 0
            for i in 0..<bits {
                let positive = flat.data[row * bits + i] > 0
                values.data[row * bits + i] = positive ? 1 : -1
                if positive { index |= 1 << Int32(i) }
            }
            codes[row] = index
        }
        return (values, codes)
    }

    /// z [B, b, h, w] → signs [B, b, h, w] (straight-through) + codes + the weighted commitment and
    /// entropy losses.
    public func callAsFunction(_ z: Tensor, training: Bool) -> QuantizerOutput {
        let (b, bits, h, w) = (z.shape[0], z.shape[1], z.shape[2], z.shape[3])
        checkShape(bits == config.lfqBits, "LookupFreeQuantizer: input has \(bits) channels, expected b = \(config.lfqBits)")
        let flat = z.permuted([0, 2, 3, 1]).reshaped([b * h * w, bits])  // [N, b]
        let (values, codes) = quantize(flat)
        let commitment = meanSquaredError(flat, values)
        var loss = config.commitmentWeight * commitment
        var terms: [(name: String, value: Float)] = [("commitment", commitment.item)]
        if training && config.entropyWeight > 0 {
            let entropy = lfqEntropy(flat, corners: corners, temperature: config.entropyTemperature)  // [2]
            let perSample = entropy.narrow(axis: 0, start: 0, length: 1).reshaped([])
            let batch = entropy.narrow(axis: 0, start: 1, length: 1).reshaped([])
            loss = loss + config.entropyWeight * (perSample - config.batchEntropyWeight * batch)
            terms.append(("per_sample_entropy", entropy.data[0]))
            terms.append(("batch_entropy", entropy.data[1]))
        }
        let quantized = straightThrough(flat, quantized: values).reshaped([b, h, w, bits]).permuted([0, 3, 1, 2])
        return QuantizerOutput(quantized: quantized, codes: codes, loss: loss, terms: terms)
    }

    /// Codes [N] → sign vectors [N, b].
    public func lookup(_ codes: [Int32]) -> Tensor {
        let bits = config.lfqBits
        let out = Tensor(uninitializedShape: [codes.count, bits])
        for (n, code) in codes.enumerated() {
            precondition(code >= 0 && Int(code) < (1 << bits), "LookupFreeQuantizer: code \(code) is outside 0..<\(1 << bits)")
            for i in 0..<bits { out.data[n * bits + i] = (code >> Int32(i)) & 1 == 1 ? 1 : -1 }
        }
        return out
    }
}

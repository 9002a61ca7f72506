// Vector quantisation (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation
// Learning", §3.1–3.2, eq. 1–3; EMA updates in App. A.1), with dead-code restarts (Dhariwal et al.
// 2020, Jukebox, §3.3 "random restarts"): the bottleneck of Chameleon's and Show-o's image tokenizers.
//
// Shapes: N = B·h·w encoder vectors, D code width, K codebook entries.
//
//   k(n)  = argmin_k ‖z_n − e_k‖² = argmin_k (‖e_k‖² − 2·z_n·e_k)        (eq. 1; ‖z_n‖² is the same for every k)
//   z_q   = z + sg(e_k(n) − z)                                            (straight-through, §3.2)
//   loss  = ‖sg(z) − e‖² (codebook, `loss` update) + β·‖z − sg(e)‖² (commitment), β = 0.25   (eq. 3)
//   EMA:  N_k ← γN_k + (1 − γ)n_k,  m_k ← γm_k + (1 − γ)Σ_{n: k(n) = k} z_n,  e_k = m_k / N_k   (App. A.1)
// The distances are one sgemm over all N × K pairs, never a per-pair loop.
import Foundation

/// The nearest codebook row to each row of `vectors` [N, D] in squared Euclidean distance (ties go to
/// the lower index). `codebook` is [K, D]. No gradient: the argmin is piecewise constant.
public func nearestCodes(_ vectors: Tensor, codebook: Tensor) -> [Int32] {
    checkShape(vectors.rank == 2 && codebook.rank == 2 && vectors.shape[1] == codebook.shape[1],
               "nearestCodes: vectors \(vectors.shape) and codebook \(codebook.shape) must be [N, D] and [K, D]")
    let n = vectors.shape[0], d = vectors.shape[1], k = codebook.shape[0]
    let e = codebook.data  // [K, D]
    var squaredNorms = [Float](repeating: 0, count: k)  // ‖e_k‖²
    for row in 0..<k {
        var s: Float = 0
        for j in 0..<d { s += e[row * d + j] * e[row * d + j] }
        squaredNorms[row] = s
    }
    var result = [Int32](repeating: 0, count: n)
    // Rows in chunks so the distance buffer stays about a megafloat whatever N is.
    let chunk = max(1, min(n, (1 << 20) / max(k, 1)))
    let distances = Tensor(uninitializedShape: [chunk, k])  // [rows, K]: ‖e_k‖² − 2·z·e_k
    var first = 0
    while first < n {
        let rows = min(chunk, n - first)
        let dist = distances.data
        squaredNorms.withUnsafeBufferPointer { norms in
            for r in 0..<rows { (dist + r * k).update(from: norms.baseAddress!, count: k) }
        }
        BLAS.sgemm(transA: false, transB: true, m: rows, n: k, k: d, alpha: -2,
                   a: vectors.data + first * d, lda: d, b: e, ldb: d, beta: 1, c: dist, ldc: k)
        result.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress! + first
            Parallel.forRows(rows, width: k) { range in
                for r in range {
                    let row = dist + r * k
                    var best = 0
                    var bestValue = row[0]
                    for j in 1..<k where row[j] < bestValue { bestValue = row[j]; best = j }
                    base[r] = Int32(best)
                }
            }
        }
        first += rows
    }
    withExtendedLifetime(distances) {}
    return result
}

/// What one pass through a quantiser produced.
public struct QuantizerOutput {
    /// The decoder's input [B, C, h, w]: quantised values with the straight-through gradient.
    public var quantized: Tensor
    /// The code of each position, row-major per image: N = B·h·w values.
    public var codes: [Int32]
    /// The bottleneck's weighted loss terms, summed (a scalar tensor), added to the reconstruction loss.
    public var loss: Tensor
    /// Each unweighted term, for the log.
    public var terms: [(name: String, value: Float)]
}

public final class VectorQuantizer: Module {
    /// [K, D]. A parameter (requiresGrad) under the `loss` update; a buffer moved by EMA under `ema`.
    public let codebook: Tensor
    let clusterSize: Tensor  // [K]: N_k, EMA of assignments per batch (ema only)
    let embeddingSum: Tensor  // [K, D]: m_k, EMA of the sum of assigned vectors (ema only)
    var assignmentsSinceCheck: [Int]  // per code, since the last dead-code check
    var stepsSinceCheck = 0
    /// False until the first training batch has replaced the random codebook with encoder outputs.
    var initializedFromData = false
    /// Codes restarted so far in training (logged).
    public private(set) var restartCount = 0
    let config: AutoencoderConfig

    public init(config: AutoencoderConfig, generator: inout RandomGenerator) {
        let k = config.codebookSize, d = config.codeDimension
        self.config = config
        codebook = Tensor.randomNormal([k, d], std: 1 / Float(d).squareRoot(), generator: &generator,
                                       requiresGrad: config.codebookUpdate == .loss)
        clusterSize = Tensor(repeating: 1, shape: [k])
        embeddingSum = codebook.copy()
        assignmentsSinceCheck = Array(repeating: 0, count: k)
    }

    /// Buffers saved beside the parameters (the codebook, when EMA moves it rather than AdamW).
    var buffers: [(name: String, tensor: Tensor)] { codebook.requiresGrad ? [] : [("codebook", codebook)] }

    /// z [B, D, h, w] → quantised [B, D, h, w] + codes + losses. With `training`, updates the codebook
    /// (EMA), counts assignments and restarts dead codes from random rows of this batch.
    public func callAsFunction(_ z: Tensor, training: Bool, generator: inout RandomGenerator) -> QuantizerOutput {
        let (b, d, h, w) = (z.shape[0], z.shape[1], z.shape[2], z.shape[3])
        checkShape(d == config.codeDimension, "VectorQuantizer: input has \(d) channels, codes have \(config.codeDimension)")
        let flat = z.permuted([0, 2, 3, 1]).reshaped([b * h * w, d])  // [N, D], rows in (b, y, x) order
        if training && !initializedFromData {
            // Data-dependent start (as k-means seeding): every code becomes a random encoder output.
            restart(codes: Array(0..<config.codebookSize), from: flat, generator: &generator)
            initializedFromData = true
        }
        let codes = nearestCodes(flat, codebook: codebook)
        let selected = embedding(codebook, ids: codes)  // [N, D]; gradient to the codebook under `loss`
        let commitment = meanSquaredError(flat, selected.detached())
        var loss = config.commitmentWeight * commitment
        var terms: [(String, Float)] = [("commitment", commitment.item)]
        if codebook.requiresGrad {
            let codebookLoss = meanSquaredError(selected, flat.detached())
            loss = loss + codebookLoss
            terms.append(("codebook", codebookLoss.item))
        }
        let quantized = straightThrough(flat, quantized: selected.detached())  // [N, D]
            .reshaped([b, h, w, d]).permuted([0, 3, 1, 2])  // [B, D, h, w]
        if training {
            for code in codes { assignmentsSinceCheck[Int(code)] += 1 }
            if !codebook.requiresGrad { emaUpdate(flat, codes) }
            stepsSinceCheck += 1
            if config.restartInterval > 0 && stepsSinceCheck >= config.restartInterval {
                let threshold = Int(config.deadCodeThreshold.rounded(.up))
                let dead = (0..<config.codebookSize).filter { assignmentsSinceCheck[$0] < max(1, threshold) }
                if !dead.isEmpty { restart(codes: dead, from: flat, generator: &generator) }
                terms.append(("restarted_codes", Float(dead.count)))
                assignmentsSinceCheck = Array(repeating: 0, count: config.codebookSize)
                stepsSinceCheck = 0
            }
        }
        return QuantizerOutput(quantized: quantized, codes: codes, loss: loss, terms: terms)
    }

    /// Codes [N] → code vectors [N, D] (no gradient).
    public func lookup(_ codes: [Int32]) -> Tensor {
        for c in codes where c < 0 || Int(c) >= config.codebookSize {
            preconditionFailure("VectorQuantizer: code \(c) is outside 0..<\(config.codebookSize)")
        }
        return withoutGradients { embedding(codebook, ids: codes) }
    }

    /// N_k ← γN_k + (1 − γ)n_k,  m_k ← γm_k + (1 − γ)Σ z,  e_k = m_k / N_k   (App. A.1). No Laplace
    /// smoothing is needed: N_k starts at 1 and dead codes are restarted before it nears 0.
    func emaUpdate(_ flat: Tensor, _ codes: [Int32]) {
        let k = config.codebookSize, d = config.codeDimension, gamma = config.emaDecay
        var counts = [Float](repeating: 0, count: k)
        var sums = [Float](repeating: 0, count: k * d)  // Σ z_n per code
        let z = flat.data
        for (n, code) in codes.enumerated() {
            let c = Int(code)
            counts[c] += 1
            for j in 0..<d { sums[c * d + j] += z[n * d + j] }
        }
        let size = clusterSize.data, sum = embeddingSum.data, e = codebook.data
        for c in 0..<k {
            size[c] = gamma * size[c] + (1 - gamma) * counts[c]
            let inverse = 1 / max(size[c], 1e-6)
            for j in 0..<d {
                sum[c * d + j] = gamma * sum[c * d + j] + (1 - gamma) * sums[c * d + j]
                e[c * d + j] = sum[c * d + j] * inverse
            }
        }
        withExtendedLifetime(flat) {}
    }

    /// Moves each listed code onto a random row of `flat` [N, D] (Jukebox's random restart), resetting
    /// its EMA state to that one vector.
    func restart(codes dead: [Int], from flat: Tensor, generator: inout RandomGenerator) {
        let d = config.codeDimension, n = flat.shape[0]
        let e = codebook.data, sum = embeddingSum.data, size = clusterSize.data
        for c in dead {
            let source = flat.data + generator.nextInt(below: n) * d
            (e + c * d).update(from: source, count: d)
            (sum + c * d).update(from: source, count: d)
            size[c] = 1
        }
        restartCount += dead.count
        withExtendedLifetime(flat) {}
    }
}

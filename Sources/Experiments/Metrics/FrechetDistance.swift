// Fréchet distance between Gaussians fitted to two feature sets: the FID of Heusel et al. 2017
// ("GANs Trained by a Two Time-Scale Update Rule…", arXiv 1706.08500, §"Fréchet Inception Distance"),
// with the closed form of Dowson & Landau 1982 for two Gaussians:
//
//   d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2})
//
// In Float64 throughout. The trace term uses the symmetric form above (not sqrtm(Σ1 Σ2), which
// scipy needs a non-symmetric Schur decomposition for): Σ1^{1/2} from one symmetric eigen-decomposition,
// then the eigenvalues of the symmetric PSD matrix Σ1^{1/2} Σ2 Σ1^{1/2}, whose square roots sum to the
// trace. Both decompositions are LAPACK's dsyevd; rank-deficient covariances (N ≤ D) need no ε·I.
//
// Eigenvalues below D·ε·λ_max are rounding noise around zero (numpy.linalg.matrix_rank's tolerance),
// and are taken as 0 before square roots: √ turns noise of size ε·λ_max into √ε·√λ_max, and with N < D
// the D − N null directions would add ~1e-6 to FD(X, X) instead of ~1e-13.
//
// Shapes: N samples, D feature width. features [N, D] → mean [D], covariance [D, D].
import Fusion

/// The mean and covariance of a feature set, with the N they were estimated from.
struct GaussianStatistics {
    let dimension: Int        // D
    let count: Int            // N
    let mean: [Double]        // [D]
    let covariance: [Double]  // [D, D] row-major, unbiased (divided by N − 1, as numpy.cov)

    init(mean: [Double], covariance: [Double], count: Int) {
        precondition(covariance.count == mean.count * mean.count,
                     "GaussianStatistics: covariance of \(covariance.count) values for a mean of \(mean.count)")
        self.dimension = mean.count
        self.count = count
        self.mean = mean
        self.covariance = covariance
    }

    /// Fits the statistics of `features` [N, D] (row-major), N ≥ 2.
    init(features: [Double], count n: Int, dimension d: Int) throws {
        guard n >= 2 else {
            throw MetricError(description: "a covariance needs at least 2 samples, got \(n); generate more images")
        }
        precondition(features.count == n * d, "GaussianStatistics: \(features.count) values for [\(n), \(d)]")
        if let bad = features.firstIndex(where: { !$0.isFinite }) {
            throw MetricError(description: "feature \(bad % d) of sample \(bad / d) is \(features[bad]); the features must be finite")
        }
        var mean = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mean[j] += features[i * d + j] } }
        for j in 0..<d { mean[j] /= Double(n) }
        var centred = features  // [N, D]
        for i in 0..<n { for j in 0..<d { centred[i * d + j] -= mean[j] } }
        // Σ = Xcᵀ Xc / (N − 1): one dgemm (D×N by N×D).
        var covariance = [Double](repeating: 0, count: d * d)
        centred.withUnsafeBufferPointer { x in
            covariance.withUnsafeMutableBufferPointer { c in
                Float64LinearAlgebra.dgemm(transA: true, transB: false, m: d, n: d, k: n, alpha: 1 / Double(n - 1),
                                           a: x.baseAddress!, lda: d, b: x.baseAddress!, ldb: d,
                                           c: c.baseAddress!, ldc: d)
            }
        }
        self.init(mean: mean, covariance: covariance, count: n)
    }

    /// Fits the statistics of `features` [N, D].
    init(features: Tensor) throws {
        guard features.rank == 2 else {
            throw MetricError(description: "features of shape \(features.shape), expected [N, D]")
        }
        try self.init(features: (0..<features.count).map { Double(features.data[$0]) },
                      count: features.shape[0], dimension: features.shape[1])
    }
}

enum FrechetDistance {
    /// d² between the Gaussians `a` and `b` (same D).
    static func distance(_ a: GaussianStatistics, _ b: GaussianStatistics) throws -> Double {
        guard a.dimension == b.dimension else {
            throw MetricError(description: "Fréchet distance between features of width \(a.dimension) and \(b.dimension); both sets must come from the same feature extractor")
        }
        let d = a.dimension
        var meanTerm = 0.0
        for j in 0..<d { meanTerm += (a.mean[j] - b.mean[j]) * (a.mean[j] - b.mean[j]) }
        var traces = 0.0
        for j in 0..<d { traces += a.covariance[j * d + j] + b.covariance[j * d + j] }
        return meanTerm + traces - 2 * (try traceOfSquareRoot(a.covariance, b.covariance, dimension: d))
    }

    /// Tr (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2} for symmetric PSD Σ1, Σ2 [D, D] (= Tr (Σ1 Σ2)^{1/2}).
    static func traceOfSquareRoot(_ sigma1: [Double], _ sigma2: [Double], dimension d: Int) throws -> Double {
        let root1 = try symmetricSquareRoot(sigma1, dimension: d)                  // Σ1^{1/2} [D, D]
        let inner = Float64LinearAlgebra.product(root1, sigma2, m: d, n: d, k: d)   // Σ1^{1/2} Σ2
        var sandwich = Float64LinearAlgebra.product(inner, root1, m: d, n: d, k: d) // Σ1^{1/2} Σ2 Σ1^{1/2}
        symmetrize(&sandwich, d)
        // Its eigenvalues are ≥ 0 in exact arithmetic; rounding leaves ones near zero slightly off.
        return try rootsAboveNoise(Float64LinearAlgebra.symmetricEigen(sandwich, n: d).values).reduce(0, +)
    }

    /// √λ for each eigenvalue, 0 for those within rounding noise of zero (|λ| ≤ D·ε·max |λ|).
    private static func rootsAboveNoise(_ values: [Double]) -> [Double] {
        let tolerance = Double(values.count) * Double.ulpOfOne * (values.map(abs).max() ?? 0)
        return values.map { $0 > tolerance ? $0.squareRoot() : 0 }
    }

    /// The PSD square root V diag(√λ) Vᵀ of a symmetric matrix [D, D] (eigenvalues within rounding noise
    /// of zero, or below it, taken as 0).
    static func symmetricSquareRoot(_ matrix: [Double], dimension d: Int) throws -> [Double] {
        var symmetric = matrix
        symmetrize(&symmetric, d)
        let (values, vectors) = try Float64LinearAlgebra.symmetricEigen(symmetric, n: d)  // rows of `vectors` = eigenvectors
        let roots = rootsAboveNoise(values)
        var scaled = vectors
        for j in 0..<d { for i in 0..<d { scaled[j * d + i] *= roots[j] } }
        // Σ_j √λ_j v_j v_jᵀ = Rᵀ (diag(√λ) R) with R the eigenvector rows.
        var root = Float64LinearAlgebra.product(vectors, scaled, m: d, n: d, k: d, transA: true)
        symmetrize(&root, d)
        return root
    }

    private static func symmetrize(_ m: inout [Double], _ d: Int) {
        for i in 0..<d {
            for j in (i + 1)..<max(d, i + 1) {
                let average = (m[i * d + j] + m[j * d + i]) / 2
                m[i * d + j] = average
                m[j * d + i] = average
            }
        }
    }
}

/// A metric that cannot be computed from what it was given; the message says what to change.
struct MetricError: Error, CustomStringConvertible { let description: String }

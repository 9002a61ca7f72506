// Kernel Inception Distance (Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs",
// arXiv 1801.01401, §4): the unbiased estimator of the squared MMD (Gretton et al. 2012, JMLR,
// Lemma 6) with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over random subsets
// (the paper's and torch-fidelity's defaults: 100 subsets of 1,000 from each set). Unlike the
// Fréchet distance it is unbiased, so its values at different N are comparable.
//
//   MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j) − 2/(mn) Σ_{i,j} k(x_i, y_j)
//
// Shapes: m, n samples, d feature width; x [m, d], y [n, d]; Gram matrices by dgemm, in Float64.
import Fusion

struct KernelInceptionDistance {
    /// Samples drawn (without replacement) from each set per subset; clamped to the smaller set's size.
    var subsetSize = 1000
    /// How many subsets the estimate is averaged over.
    var subsetCount = 100
    /// Seed of the subset draws, so a value is reproducible.
    var seed: UInt64 = 0

    struct Estimate {
        let mean: Double               // KID: the average MMD²_u over subsets
        let standardDeviation: Double  // across subsets (0 with one subset)
        let subsetSize: Int            // after clamping
        let subsetCount: Int
    }

    /// KID between features x [m, d] and y [n, d] (row-major Float64).
    func estimate(_ x: [Double], count m: Int, _ y: [Double], count n: Int, dimension d: Int) throws -> Estimate {
        guard subsetCount >= 1 else {
            throw MetricError(description: "KID subset count is \(subsetCount); use at least 1")
        }
        let size = min(subsetSize, m, n)
        guard size >= 2 else {
            throw MetricError(description: "KID needs at least 2 samples in each set and a subset size of at least 2; got \(m) and \(n) samples, subset size \(subsetSize)")
        }
        var generator = RandomGenerator(seed: seed)
        var values: [Double] = []
        for _ in 0..<subsetCount {
            let xs = Self.gather(x, rows: generator.permutation(m).prefix(size), dimension: d)
            let ys = Self.gather(y, rows: generator.permutation(n).prefix(size), dimension: d)
            values.append(Self.unbiasedMMD2(xs, count: size, ys, count: size, dimension: d))
        }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.count > 1 ? values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1) : 0
        return Estimate(mean: mean, standardDeviation: variance.squareRoot(), subsetSize: size, subsetCount: subsetCount)
    }

    /// KID between features x [m, D] and y [n, D].
    func estimate(_ x: Tensor, _ y: Tensor) throws -> Estimate {
        guard x.rank == 2, y.rank == 2, x.shape[1] == y.shape[1] else {
            throw MetricError(description: "KID between features of shapes \(x.shape) and \(y.shape); expected [m, D] and [n, D] from the same extractor")
        }
        func doubles(_ t: Tensor) throws -> [Double] {
            let values = (0..<t.count).map { Double(t.data[$0]) }
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw MetricError(description: "feature \(bad % t.shape[1]) of sample \(bad / t.shape[1]) is \(values[bad]); the features must be finite")
            }
            return values
        }
        return try estimate(doubles(x), count: x.shape[0], doubles(y), count: y.shape[0], dimension: x.shape[1])
    }

    /// MMD²_u between all of x [m, d] and all of y [n, d] (m, n ≥ 2).
    static func unbiasedMMD2(_ x: [Double], count m: Int, _ y: [Double], count n: Int, dimension d: Int) -> Double {
        precondition(m >= 2 && n >= 2 && x.count == m * d && y.count == n * d,
                     "unbiasedMMD2: x has \(x.count) values for [\(m), \(d)], y \(y.count) for [\(n), \(d)]")
        /// Σ over entries of k applied to the Gram matrix a bᵀ [rows, columns]; without the diagonal if asked.
        func kernelSum(_ a: [Double], _ rows: Int, _ b: [Double], _ columns: Int, skipDiagonal: Bool) -> Double {
            let gram = Float64LinearAlgebra.product(a, b, m: rows, n: columns, k: d, transB: true)  // [rows, columns]
            var sum = 0.0
            for i in 0..<rows {
                for j in 0..<columns where !(skipDiagonal && i == j) {
                    let base = gram[i * columns + j] / Double(d) + 1
                    sum += base * base * base
                }
            }
            return sum
        }
        let xx = kernelSum(x, m, x, m, skipDiagonal: true) / Double(m * (m - 1))
        let yy = kernelSum(y, n, y, n, skipDiagonal: true) / Double(n * (n - 1))
        let xy = kernelSum(x, m, y, n, skipDiagonal: false) / Double(m * n)
        return xx + yy - 2 * xy
    }

    private static func gather(_ features: [Double], rows: ArraySlice<Int>, dimension d: Int) -> [Double] {
        var out = [Double]()
        out.reserveCapacity(rows.count * d)
        for row in rows { out.append(contentsOf: features[(row * d)..<((row + 1) * d)]) }
        return out
    }
}

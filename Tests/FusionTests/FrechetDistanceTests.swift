// The Fréchet distance against closed forms (diagonal, commuting and scaled covariances) and against
// an independent computation: Tr (Σ1 Σ2)^{1/2} by the Denman–Beavers iteration on the non-symmetric
// product (Denman & Beavers 1976; Higham, "Functions of Matrices", §6.3), with Gauss–Jordan inverses,
// all written here in Float64 — no LAPACK and no symmetric sandwich, unlike the code under test.
import XCTest
import Fusion
@testable import Experiments

final class FrechetDistanceTests: XCTestCase {
    // MARK: Helpers (Float64, row-major)

    private func randomNormals(_ count: Int, _ generator: inout RandomGenerator) -> [Double] {
        (0..<count).map { _ in Double(generator.normal()) }
    }

    private func multiply(_ a: [Double], _ b: [Double], _ n: Int) -> [Double] {
        var c = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for k in 0..<n { for j in 0..<n { c[i * n + j] += a[i * n + k] * b[k * n + j] } } }
        return c
    }

    private func transpose(_ a: [Double], _ n: Int) -> [Double] {
        var t = a
        for i in 0..<n { for j in 0..<n { t[j * n + i] = a[i * n + j] } }
        return t
    }

    /// A random SPD matrix A Aᵀ / n + shift·I.
    private func randomSPD(_ n: Int, shift: Double, _ generator: inout RandomGenerator) -> [Double] {
        let a = randomNormals(n * n, &generator)
        var s = multiply(a, transpose(a, n), n)
        for i in 0..<n { for j in 0..<n { s[i * n + j] /= Double(n) } ; s[i * n + i] += shift }
        return s
    }

    /// A random orthogonal matrix: Gram–Schmidt on the columns of a Gaussian matrix.
    private func randomOrthogonal(_ n: Int, _ generator: inout RandomGenerator) -> [Double] {
        var q = randomNormals(n * n, &generator)
        for j in 0..<n {
            for k in 0..<j {
                var dot = 0.0
                for i in 0..<n { dot += q[i * n + j] * q[i * n + k] }
                for i in 0..<n { q[i * n + j] -= dot * q[i * n + k] }
            }
            var norm = 0.0
            for i in 0..<n { norm += q[i * n + j] * q[i * n + j] }
            for i in 0..<n { q[i * n + j] /= norm.squareRoot() }
        }
        return q
    }

    private func inverse(_ a: [Double], _ n: Int) -> [Double] {
        var m = a, inv = [Double](repeating: 0, count: n * n)
        for i in 0..<n { inv[i * n + i] = 1 }
        for column in 0..<n {
            let pivot = (column..<n).max { abs(m[$0 * n + column]) < abs(m[$1 * n + column]) }!
            for j in 0..<n { m.swapAt(column * n + j, pivot * n + j); inv.swapAt(column * n + j, pivot * n + j) }
            let p = m[column * n + column]
            for j in 0..<n { m[column * n + j] /= p; inv[column * n + j] /= p }
            for i in 0..<n where i != column {
                let f = m[i * n + column]
                if f == 0 { continue }
                for j in 0..<n { m[i * n + j] -= f * m[column * n + j]; inv[i * n + j] -= f * inv[column * n + j] }
            }
        }
        return inv
    }

    /// Tr (Σ1 Σ2)^{1/2} by Denman–Beavers: Y → (Y + Z⁻¹)/2, Z → (Z + Y⁻¹)/2 from Y = A, Z = I converges
    /// quadratically to A^{1/2} when A has no eigenvalue on the closed negative real axis (here all are
    /// positive: Σ1 Σ2 is similar to Σ1^{1/2} Σ2 Σ1^{1/2}).
    private func denmanBeaversTraceOfSquareRoot(_ s1: [Double], _ s2: [Double], _ n: Int) -> Double {
        var y = multiply(s1, s2, n)
        var z = [Double](repeating: 0, count: n * n)
        for i in 0..<n { z[i * n + i] = 1 }
        for _ in 0..<100 {
            let yInverse = inverse(y, n), zInverse = inverse(z, n)
            let next = (0..<(n * n)).map { (y[$0] + zInverse[$0]) / 2 }
            z = (0..<(n * n)).map { (z[$0] + yInverse[$0]) / 2 }
            let change = zip(next, y).map { abs($0 - $1) }.max()!
            y = next
            if change < 1e-15 * y.map(abs).max()! { break }
        }
        return (0..<n).reduce(0) { $0 + y[$1 * n + $1] }
    }

    private func assertClose(_ actual: Double, _ expected: Double, relative: Double, _ message: String = "",
                             file: StaticString = #filePath, line: UInt = #line) {
        let difference = abs(actual - expected)
        XCTAssertLessThanOrEqual(difference, relative * max(abs(expected), 1), "\(message): got \(actual), expected \(expected), difference \(difference)", file: file, line: line)
    }

    // MARK: Closed forms

    /// Diagonal covariances: d² = ‖μ1 − μ2‖² + Σ (√a_i − √b_i)². The eigen-decompositions are exact up
    /// to a few ulp on each of D = 24 values, so 1e-12 relative is loose by about 100×.
    func testDiagonalCovariancesMatchClosedForm() throws {
        var generator = RandomGenerator(seed: 1)
        let d = 24
        let a = (0..<d).map { _ in Double(generator.nextFloat()) * 3 + 0.01 }
        let b = (0..<d).map { _ in Double(generator.nextFloat()) * 3 + 0.01 }
        let mu1 = randomNormals(d, &generator), mu2 = randomNormals(d, &generator)
        func diagonal(_ v: [Double]) -> [Double] {
            var m = [Double](repeating: 0, count: d * d)
            for i in 0..<d { m[i * d + i] = v[i] }
            return m
        }
        let got = try FrechetDistance.distance(GaussianStatistics(mean: mu1, covariance: diagonal(a), count: 100),
                                               GaussianStatistics(mean: mu2, covariance: diagonal(b), count: 100))
        let expected = zip(mu1, mu2).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
            + zip(a, b).reduce(0) { $0 + ($1.0.squareRoot() - $1.1.squareRoot()) * ($1.0.squareRoot() - $1.1.squareRoot()) }
        assertClose(got, expected, relative: 1e-12, "diagonal")
    }

    /// Commuting covariances Q diag(a) Qᵀ and Q diag(b) Qᵀ (one random rotation Q): the same closed form
    /// as the diagonal case, now through dense matrices; D = 32, tolerance 1e-10 relative (rounding in
    /// the products grows with D and with the condition number, here ≤ 300).
    func testCommutingCovariancesMatchClosedForm() throws {
        var generator = RandomGenerator(seed: 2)
        let d = 32
        let q = randomOrthogonal(d, &generator)
        let a = (0..<d).map { _ in Double(generator.nextFloat()) * 3 + 0.01 }
        let b = (0..<d).map { _ in Double(generator.nextFloat()) * 3 + 0.01 }
        func rotated(_ v: [Double]) -> [Double] {
            var qd = q
            for i in 0..<d { for j in 0..<d { qd[i * d + j] *= v[j] } }
            return multiply(qd, transpose(q, d), d)
        }
        let mean = [Double](repeating: 0.5, count: d)
        let got = try FrechetDistance.distance(GaussianStatistics(mean: mean, covariance: rotated(a), count: 10),
                                               GaussianStatistics(mean: mean, covariance: rotated(b), count: 10))
        let expected = zip(a, b).reduce(0) { $0 + ($1.0.squareRoot() - $1.1.squareRoot()) * ($1.0.squareRoot() - $1.1.squareRoot()) }
        assertClose(got, expected, relative: 1e-10, "commuting")
    }

    /// Σ2 = c² Σ1: (Σ1^{1/2} c² Σ1 Σ1^{1/2})^{1/2} = c Σ1, so d² = (1 − c)² Tr Σ1.
    func testScaledCovarianceMatchesClosedForm() throws {
        var generator = RandomGenerator(seed: 3)
        let d = 20, c = 1.7
        let s1 = randomSPD(d, shift: 0.1, &generator)
        let mean = [Double](repeating: 0, count: d)
        let got = try FrechetDistance.distance(GaussianStatistics(mean: mean, covariance: s1, count: 10),
                                               GaussianStatistics(mean: mean, covariance: s1.map { $0 * c * c }, count: 10))
        let trace = (0..<d).reduce(0) { $0 + s1[$1 * d + $1] }
        assertClose(got, (1 - c) * (1 - c) * trace, relative: 1e-10, "scaled")
    }

    // MARK: Independent computation

    /// Random, non-commuting SPD pairs against Denman–Beavers on Σ1 Σ2. Condition numbers here are
    /// ≤ ~1e3, so both sides keep ≥ 11 digits; 1e-9 relative on the distance.
    func testRandomSPDMatchesDenmanBeavers() throws {
        var generator = RandomGenerator(seed: 4)
        for (d, shift) in [(5, 0.05), (16, 0.01), (40, 0.1)] {
            let s1 = randomSPD(d, shift: shift, &generator), s2 = randomSPD(d, shift: shift, &generator)
            let mu1 = randomNormals(d, &generator), mu2 = randomNormals(d, &generator)
            let got = try FrechetDistance.distance(GaussianStatistics(mean: mu1, covariance: s1, count: 10),
                                                   GaussianStatistics(mean: mu2, covariance: s2, count: 10))
            let traces = (0..<d).reduce(0) { $0 + s1[$1 * d + $1] + s2[$1 * d + $1] }
            let expected = zip(mu1, mu2).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
                + traces - 2 * denmanBeaversTraceOfSquareRoot(s1, s2, d)
            assertClose(got, expected, relative: 1e-9, "D = \(d)")
            // The trace term alone, which is where a wrong square root would show.
            assertClose(try FrechetDistance.traceOfSquareRoot(s1, s2, dimension: d),
                        denmanBeaversTraceOfSquareRoot(s1, s2, d), relative: 1e-9, "trace term, D = \(d)")
        }
    }

    /// The statistics of a feature set against a two-pass loop over the samples: same Float32 inputs,
    /// summed in Float64 in a different order, so agreement to 1e-12 relative.
    func testStatisticsMatchDirectLoops() throws {
        var generator = RandomGenerator(seed: 5)
        let n = 300, d = 12
        let features = Tensor.randomNormal([n, d], mean: 0.3, std: 2, generator: &generator)
        let statistics = try GaussianStatistics(features: features)
        XCTAssertEqual(statistics.count, n)
        XCTAssertEqual(statistics.dimension, d)
        let x = features.array.map(Double.init)
        for j in 0..<d {
            let mean = (0..<n).reduce(0) { $0 + x[$1 * d + j] } / Double(n)
            assertClose(statistics.mean[j], mean, relative: 1e-12, "mean \(j)")
        }
        for i in 0..<d {
            for j in 0..<d {
                let mi = statistics.mean[i], mj = statistics.mean[j]
                let covariance = (0..<n).reduce(0) { $0 + (x[$1 * d + i] - mi) * (x[$1 * d + j] - mj) } / Double(n - 1)
                assertClose(statistics.covariance[i * d + j], covariance, relative: 1e-12, "covariance (\(i), \(j))")
            }
        }
    }

    // MARK: Properties and errors

    /// FD(X, X) = 0: the trace term equals Tr Σ up to rounding, ~1e-13 of Tr Σ (≈ D = 128), so 1e-9·D
    /// leaves a wide margin. Also with N < D: a singular covariance, which sqrtm-based code needs an ε·I
    /// offset for, and where square roots of rounding noise (without the D·ε·λ_max cut) gave 4e-6.
    func testDistanceOfASetToItselfIsZero() throws {
        var generator = RandomGenerator(seed: 6)
        for (n, d) in [(1000, 128), (50, 128)] {
            let features = Tensor.randomNormal([n, d], std: 1, generator: &generator)
            let statistics = try GaussianStatistics(features: features)
            let distance = try FrechetDistance.distance(statistics, statistics)
            XCTAssertLessThan(abs(distance), 1e-9 * Double(d), "N = \(n), D = \(d): FD(X, X) = \(distance)")
        }
        // Two different samples of one distribution are close but not equal (the small-N bias).
        let x = try GaussianStatistics(features: Tensor.randomNormal([2000, 8], std: 1, generator: &generator))
        let y = try GaussianStatistics(features: Tensor.randomNormal([2000, 8], std: 1, generator: &generator))
        let distance = try FrechetDistance.distance(x, y)
        XCTAssertGreaterThan(distance, 0)
        XCTAssertLessThan(distance, 0.1)
    }

    func testErrorsSayWhatToChange() {
        var generator = RandomGenerator(seed: 7)
        XCTAssertThrowsError(try GaussianStatistics(features: Tensor.randomNormal([1, 4], std: 1, generator: &generator))) {
            XCTAssertTrue("\($0)".contains("at least 2 samples"), "\($0)")
        }
        XCTAssertThrowsError(try FrechetDistance.distance(
            GaussianStatistics(mean: [0, 0], covariance: [1, 0, 0, 1], count: 2),
            GaussianStatistics(mean: [0], covariance: [1], count: 2))) {
            XCTAssertTrue("\($0)".contains("width 2 and 1"), "\($0)")
        }
        let nan = Tensor([1, 2, .nan, 4], shape: [2, 2])
        XCTAssertThrowsError(try GaussianStatistics(features: nan)) {
            XCTAssertTrue("\($0)".contains("must be finite"), "\($0)")
        }
    }

    /// LAPACK's eigen-decomposition itself: A v = λ v and orthonormal V on a random symmetric matrix.
    func testSymmetricEigenDecomposition() throws {
        var generator = RandomGenerator(seed: 8)
        let n = 10
        let a = randomSPD(n, shift: -0.5, &generator)  // symmetric, some eigenvalues negative
        let (values, vectors) = try Float64LinearAlgebra.symmetricEigen(a, n: n)
        XCTAssertEqual(values, values.sorted())
        XCTAssertTrue(values.first! < 0)
        for j in 0..<n {
            let v = Array(vectors[(j * n)..<((j + 1) * n)])
            for i in 0..<n {
                let av = (0..<n).reduce(0) { $0 + a[i * n + $1] * v[$1] }
                XCTAssertEqual(av, values[j] * v[i], accuracy: 1e-12, "A v = λ v, vector \(j), row \(i)")
            }
            for k in 0..<n {
                let dot = (0..<n).reduce(0) { $0 + v[$1] * vectors[k * n + $1] }
                XCTAssertEqual(dot, j == k ? 1 : 0, accuracy: 1e-12, "VᵀV = I at (\(j), \(k))")
            }
        }
    }
}

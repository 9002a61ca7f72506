// KID against the unbiased MMD² written out as a direct O(n²) sum of per-pair dot products (no
// matrix products), and its unbiasedness: over many independent draws from one distribution its mean
// is within three standard errors of zero, where the biased (V-statistic) estimator is not.
import XCTest
import Fusion
@testable import Experiments

final class KernelInceptionDistanceTests: XCTestCase {
    private func sample(_ count: Int, _ d: Int, shift: Double = 0, _ generator: inout RandomGenerator) -> [Double] {
        (0..<(count * d)).map { _ in Double(generator.normal()) + shift }
    }

    /// k(x, y) = (xᵀy / d + 1)³ and MMD²_u by the definition, pair by pair.
    private func directMMD2(_ x: [Double], _ m: Int, _ y: [Double], _ n: Int, _ d: Int, biased: Bool = false) -> Double {
        func k(_ a: [Double], _ i: Int, _ b: [Double], _ j: Int) -> Double {
            var dot = 0.0
            for t in 0..<d { dot += a[i * d + t] * b[j * d + t] }
            return pow(dot / Double(d) + 1, 3)
        }
        var xx = 0.0, yy = 0.0, xy = 0.0
        for i in 0..<m { for j in 0..<m where biased || i != j { xx += k(x, i, x, j) } }
        for i in 0..<n { for j in 0..<n where biased || i != j { yy += k(y, i, y, j) } }
        for i in 0..<m { for j in 0..<n { xy += k(x, i, y, j) } }
        return biased ? xx / Double(m * m) + yy / Double(n * n) - 2 * xy / Double(m * n)
                      : xx / Double(m * (m - 1)) + yy / Double(n * (n - 1)) - 2 * xy / Double(m * n)
    }

    /// The dgemm form against the direct sum, unequal sizes: both in Float64, sums of ≤ 1,600 terms of
    /// size ~1, so agreement to 1e-12 of the largest term's scale.
    func testUnbiasedMMD2MatchesDirectSum() {
        var generator = RandomGenerator(seed: 11)
        let m = 40, n = 30, d = 7
        let x = sample(m, d, &generator), y = sample(n, d, shift: 0.3, &generator)
        let got = KernelInceptionDistance.unbiasedMMD2(x, count: m, y, count: n, dimension: d)
        let expected = directMMD2(x, m, y, n, d)
        XCTAssertEqual(got, expected, accuracy: 1e-12, "got \(got), expected \(expected)")
        XCTAssertGreaterThan(expected, 0.01, "a shift of 0.3 should be visible")
    }

    /// With one subset as large as both sets, the subset is a permutation of each set, and MMD²_u is
    /// invariant under permutations: KID equals the direct formula on the whole sets.
    func testWholeSetSubsetEqualsDirectFormula() throws {
        var generator = RandomGenerator(seed: 12)
        let n = 50, d = 5
        let x = sample(n, d, &generator), y = sample(n, d, shift: -0.2, &generator)
        let kid = KernelInceptionDistance(subsetSize: 1000, subsetCount: 1, seed: 3)
        let estimate = try kid.estimate(x, count: n, y, count: n, dimension: d)
        XCTAssertEqual(estimate.subsetSize, n, "subset size clamped to the set size")
        XCTAssertEqual(estimate.standardDeviation, 0)
        XCTAssertEqual(estimate.mean, directMMD2(x, n, y, n, d), accuracy: 1e-12)
    }

    /// Subsets: the mean over subsets equals the direct formula averaged over the same draws
    /// (reproduced here from the seed: two permutations per subset, x's first).
    func testSubsetAverageMatchesDirectFormulaOnTheSameSubsets() throws {
        var generator = RandomGenerator(seed: 13)
        let m = 60, n = 45, d = 6, size = 20, subsets = 5
        let x = sample(m, d, &generator), y = sample(n, d, shift: 0.5, &generator)
        let kid = KernelInceptionDistance(subsetSize: size, subsetCount: subsets, seed: 99)
        let estimate = try kid.estimate(x, count: m, y, count: n, dimension: d)
        var draws = RandomGenerator(seed: 99)
        var values: [Double] = []
        for _ in 0..<subsets {
            let xi = draws.permutation(m).prefix(size), yi = draws.permutation(n).prefix(size)
            let xs = xi.flatMap { x[($0 * d)..<(($0 + 1) * d)] }, ys = yi.flatMap { y[($0 * d)..<(($0 + 1) * d)] }
            values.append(directMMD2(xs, size, ys, size, d))
        }
        let mean = values.reduce(0, +) / Double(subsets)
        let std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(subsets - 1)).squareRoot()
        XCTAssertEqual(estimate.mean, mean, accuracy: 1e-12)
        XCTAssertEqual(estimate.standardDeviation, std, accuracy: 1e-12)
        // A different seed draws different subsets (so the seed is honoured).
        let other = try KernelInceptionDistance(subsetSize: size, subsetCount: subsets, seed: 100)
            .estimate(x, count: m, y, count: n, dimension: d)
        XCTAssertNotEqual(other.mean, estimate.mean)
    }

    /// Unbiasedness: 200 independent pairs of samples (m = n = 40) from N(0, I₄). The mean of MMD²_u is
    /// within 3 standard errors of 0; the biased estimator on the same draws is more than 3 standard
    /// errors above 0 (its bias, ≈ 2(E k(x,x) − E k(x,x'))/m, is what the test would catch).
    func testSameDistributionGivesZeroInExpectation() {
        var generator = RandomGenerator(seed: 14)
        let m = 40, d = 4, trials = 200
        var unbiased: [Double] = [], biased: [Double] = []
        for _ in 0..<trials {
            let x = sample(m, d, &generator), y = sample(m, d, &generator)
            unbiased.append(KernelInceptionDistance.unbiasedMMD2(x, count: m, y, count: m, dimension: d))
            biased.append(directMMD2(x, m, y, m, d, biased: true))
        }
        func meanAndStandardError(_ v: [Double]) -> (Double, Double) {
            let mean = v.reduce(0, +) / Double(v.count)
            let variance = v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count - 1)
            return (mean, (variance / Double(v.count)).squareRoot())
        }
        let (mean, error) = meanAndStandardError(unbiased)
        XCTAssertLessThan(abs(mean), 3 * error, "unbiased MMD² mean \(mean), standard error \(error)")
        let (biasedMean, biasedError) = meanAndStandardError(biased)
        XCTAssertGreaterThan(biasedMean, 3 * biasedError, "the biased estimator should show its bias: \(biasedMean) ± \(biasedError)")
    }

    func testErrorsSayWhatToChange() {
        XCTAssertThrowsError(try KernelInceptionDistance(subsetSize: 10, subsetCount: 0).estimate([0, 0, 1, 1], count: 2, [0, 0, 1, 1], count: 2, dimension: 2)) {
            XCTAssertTrue("\($0)".contains("at least 1"), "\($0)")
        }
        XCTAssertThrowsError(try KernelInceptionDistance().estimate([0, 0], count: 1, [0, 0, 1, 1], count: 2, dimension: 2)) {
            XCTAssertTrue("\($0)".contains("at least 2 samples"), "\($0)")
        }
        XCTAssertThrowsError(try KernelInceptionDistance().estimate(Tensor(zeros: [3, 2]), Tensor(zeros: [3, 4]))) {
            XCTAssertTrue("\($0)".contains("same extractor"), "\($0)")
        }
    }
}

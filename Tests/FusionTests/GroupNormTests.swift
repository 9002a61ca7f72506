// Tests of groupNorm (GroupNorm.swift): forward values against a direct Float64 computation of the
// definition (Wu & He 2018, eq. 1–2), normalised groups with mean 0 and variance 1, accuracy when the
// mean dwarfs the spread, and gradient checks for x, weight and bias.
//
// Shapes: B batch, C channels, H W height and width, G groups.
//
// Forward tolerance: an output is (x − μ)·rstd·w + b in Float32 after μ and rstd are computed in Float64,
// so its error is a few ulps of |x̂·w| + |b| ≤ ~10: 1e-5·(1 + |expected|) is ~10× that bound, while a
// wrong group (statistics over the wrong channels) moves outputs by O(0.1–1).
import XCTest
@testable import Fusion

/// The definition, in Float64: per (b, g), μ and σ² over the group's Cg·H·W values, then the affine map.
private func naiveGroupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, epsilon: Double) -> [Double] {
    let (batch, channels) = (x.shape[0], x.shape[1])
    let area = x.count / (batch * channels), perGroup = channels / groups
    var out = [Double](repeating: 0, count: x.count)
    for b in 0..<batch {
        for g in 0..<groups {
            let indices = (0..<perGroup).flatMap { j in
                (0..<area).map { i in (b * channels + g * perGroup + j) * area + i }
            }
            let mean = indices.reduce(0.0) { $0 + Double(x.data[$1]) } / Double(indices.count)
            let variance = indices.reduce(0.0) { $0 + (Double(x.data[$1]) - mean) * (Double(x.data[$1]) - mean) }
                / Double(indices.count)
            for index in indices {
                let c = (index / area) % channels
                let normalised = (Double(x.data[index]) - mean) / (variance + epsilon).squareRoot()
                out[index] = normalised * Double(weight?.data[c] ?? 1) + Double(bias?.data[c] ?? 0)
            }
        }
    }
    return out
}

private func assertClose(_ actual: Tensor, _ expected: [Double], tolerance: Double, _ label: String,
                         file: StaticString = #filePath, line: UInt = #line) {
    var maxDifference = 0.0, failures: [String] = []
    for i in 0..<actual.count {
        let difference = abs(Double(actual.data[i]) - expected[i])
        maxDifference = max(maxDifference, difference)
        if difference > tolerance * (1 + abs(expected[i])), failures.count < 6 {
            failures.append("element \(i): got \(actual.data[i]), expected \(expected[i])")
        }
    }
    XCTAssert(failures.isEmpty, "\(label): max |difference| \(maxDifference)\n" + failures.joined(separator: "\n"),
              file: file, line: line)
}

final class GroupNormTests: XCTestCase {
    func testForwardMatchesDefinition() {
        // groups = 1 (LayerNorm over C, H, W), 2, and C (InstanceNorm); a non-square image.
        for (n, groups) in [1, 2, 6].enumerated() {
            let x = testTensor([3, 6, 4, 5], seed: 10 + UInt64(n), requiresGrad: false)  // [B, C, H, W]
            let w = testTensor([6], seed: 20 + UInt64(n), range: 0.5...1.5, requiresGrad: false)
            let b = testTensor([6], seed: 30 + UInt64(n), requiresGrad: false)
            let y = groupNorm(x, groups: groups, weight: w, bias: b)
            XCTAssertEqual(y.shape, x.shape)
            assertClose(y, naiveGroupNorm(x, groups: groups, weight: w, bias: b, epsilon: 1e-5), tolerance: 1e-5,
                        "groupNorm, \(groups) groups")
        }
    }

    /// With weight 1 and bias 0 each (b, g) comes out with mean 0 and variance σ²/(σ² + ε) ≈ 1 − 3e-5
    /// (σ² ≈ 1/3 for uniform values in [−1, 1]); 1e-4 allows for that and Float32 rounding.
    func testGroupsAreNormalised() {
        let (batch, channels, groups, area) = (2, 8, 4, 9)
        let x = testTensor([batch, channels, 3, 3], seed: 40, range: -3...5, requiresGrad: false)
        let y = groupNorm(x, groups: groups, weight: Tensor(repeating: 1, shape: [channels]),
                          bias: Tensor(zeros: [channels]))
        let n = channels / groups * area
        for bg in 0..<(batch * groups) {
            let values = (0..<n).map { Double(y.data[bg * n + $0]) }
            let mean = values.reduce(0, +) / Double(n)
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
            XCTAssertEqual(mean, 0, accuracy: 1e-5, "mean of group \(bg)")
            XCTAssertEqual(variance, 1, accuracy: 1e-4, "variance of group \(bg)")
        }
    }

    /// Values 1000 ± 1: a one-pass Float32 E[x²] − E[x]² would lose all of σ² ≈ 1/3 (1e6·6e-8 = 0.06 of
    /// rounding per square); the two-pass Float64 statistics keep the output to Float32 rounding of x − μ
    /// (1000·6e-8 ≈ 6e-5 before scaling by rstd ≈ 1.7, so 2e-4).
    func testAccurateWhenTheMeanDwarfsTheSpread() {
        let x = testTensor([2, 4, 8, 8], seed: 50, range: 999...1001, requiresGrad: false)
        let w = testTensor([4], seed: 51, range: 0.5...1.5, requiresGrad: false)
        let b = testTensor([4], seed: 52, requiresGrad: false)
        assertClose(groupNorm(x, groups: 2, weight: w, bias: b), naiveGroupNorm(x, groups: 2, weight: w, bias: b, epsilon: 1e-5),
                    tolerance: 2e-4, "groupNorm of values near 1000")
    }

    func testGradients() {
        for (n, groups) in [1, 2, 4].enumerated() {
            let x = testTensor([2, 4, 3, 2], seed: 60 + UInt64(n))  // [B, C, H, W]
            let w = testTensor([4], seed: 70 + UInt64(n), range: 0.5...1.5)
            let b = testTensor([4], seed: 80 + UInt64(n))
            assertGradientsMatch([x, w, b]) { xs in groupNorm(xs[0], groups: groups, weight: xs[1], bias: xs[2]) }
        }
    }

    /// Only the parameters train (x frozen), and only x (parameters frozen): each path on its own.
    func testGradientsOfSomeInputs() {
        let x = testTensor([2, 4, 2, 3], seed: 90, requiresGrad: false)
        let w = testTensor([4], seed: 91, range: 0.5...1.5), b = testTensor([4], seed: 92)
        assertGradientsMatch([x, w, b]) { xs in groupNorm(xs[0], groups: 2, weight: xs[1], bias: xs[2]) }
        let x2 = testTensor([2, 4, 2, 3], seed: 93)
        let frozenW = testTensor([4], seed: 94, range: 0.5...1.5, requiresGrad: false)
        let frozenB = testTensor([4], seed: 95, requiresGrad: false)
        assertGradientsMatch([x2, frozenW, frozenB]) { xs in groupNorm(xs[0], groups: 2, weight: xs[1], bias: xs[2]) }
        XCTAssertNil(frozenW.grad)
        XCTAssertNil(frozenB.grad)
    }
}

// Gradient checks against central finite differences.
//
// For y = f(x₁…xₙ) and a fixed random cotangent w (same shape as y), the analytic gradient of
// L = Σ w·y is obtained by back-propagating w from y (no other op in between, so the check of an op
// never relies on the op itself being right), and compared with (L(x+εeᵢ) − L(x−εeᵢ)) / 2ε for every
// element i of every input. L is accumulated in Float64 so the only noise is the Float32 forward.
//
// Tolerances: with ε = 1e-2 and inputs of order 1, truncation error is O(ε²·f''') ≈ 1e-4, and
// Float32 rounding of L is about 6e-8·Σ|w·y| / 2ε ≈ 3e-6·Σ|w·y|; for the tiny shapes in the tests
// that stays below 1e-3. A wrong backward rule (a dropped term, a transposed product, a factor of 2)
// is off by at least 10 % of the gradient's scale, so `atol = 2e-3·scale, rtol = 2e-2` separates them
// (see `testGradientCheckCatchesAWrongRule`).
import XCTest
@testable import Fusion

struct GradientCheckReport {
    var maxAbsoluteError: Double = 0
    var scale: Double = 0
    var failures: [String] = []
    var passed: Bool { failures.isEmpty }
}

/// Seeded values for test inputs (a tiny LCG keeps the tests independent of the library's generator).
func testValues(_ count: Int, seed: UInt64, range: ClosedRange<Float> = -1...1) -> [Float] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        let unit = Float(state >> 40) / Float(1 << 24)
        return range.lowerBound + (range.upperBound - range.lowerBound) * unit
    }
}

func testTensor(_ shape: [Int], seed: UInt64, range: ClosedRange<Float> = -1...1,
                requiresGrad: Bool = true) -> Tensor {
    Tensor(testValues(shape.reduce(1, *), seed: seed, range: range), shape: shape, requiresGrad: requiresGrad)
}

func gradientCheck(_ inputs: [Tensor], epsilon: Float = 1e-2, rtol: Double = 2e-2, atol: Double = 2e-3,
                   _ f: ([Tensor]) -> Tensor) -> GradientCheckReport {
    for x in inputs { x.zeroGrad() }
    let y = f(inputs)
    let w = Tensor(testValues(y.count, seed: 99), shape: y.shape)
    y.backward(gradient: w)

    func loss() -> Double {
        withoutGradients {
            let out = f(inputs)
            var total = 0.0
            for i in 0..<out.count { total += Double(out.data[i]) * Double(w.data[i]) }
            return total
        }
    }

    var report = GradientCheckReport()
    var numeric: [[Double]] = []
    for x in inputs where x.requiresGrad {
        var column: [Double] = []
        for i in 0..<x.count {
            let saved = x.data[i]
            x.data[i] = saved + epsilon
            let plus = loss()
            x.data[i] = saved - epsilon
            let minus = loss()
            x.data[i] = saved
            column.append((plus - minus) / (2 * Double(epsilon)))
        }
        numeric.append(column)
    }
    report.scale = max(numeric.flatMap { $0 }.map(abs).max() ?? 0, 1e-3)
    for (inputIndex, x) in inputs.filter({ $0.requiresGrad }).enumerated() {
        for i in 0..<x.count {
            let analytic = Double(x.grad?.data[i] ?? 0)
            let expected = numeric[inputIndex][i]
            let error = abs(analytic - expected)
            report.maxAbsoluteError = max(report.maxAbsoluteError, error)
            if error > atol * report.scale + rtol * abs(expected), report.failures.count < 6 {
                report.failures.append("input \(inputIndex) (shape \(x.shape)) element \(i): "
                    + "backward \(analytic), finite difference \(expected)")
            }
        }
    }
    return report
}

/// Asserts that a gradient check passes, printing the first differing values and the max difference.
func assertGradientsMatch(_ inputs: [Tensor], epsilon: Float = 1e-2, rtol: Double = 2e-2, atol: Double = 2e-3,
                          file: StaticString = #filePath, line: UInt = #line,
                          _ f: ([Tensor]) -> Tensor) {
    let report = gradientCheck(inputs, epsilon: epsilon, rtol: rtol, atol: atol, f)
    XCTAssert(report.passed, """
        gradient check failed (max |error| \(report.maxAbsoluteError), gradient scale \(report.scale)):
        \(report.failures.joined(separator: "\n"))
        """, file: file, line: line)
}

/// Fails at the first element whose bits differ (so −0 ≠ +0 and NaN payloads count).
func assertBitwiseEqual(_ a: [Float], _ b: [Float], _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): count", file: file, line: line)
    if let i = a.indices.first(where: { i in i < b.count && a[i].bitPattern != b[i].bitPattern }) {
        XCTFail("\(what): first difference at [\(i)]: \(a[i]) vs \(b[i])", file: file, line: line)
    }
}

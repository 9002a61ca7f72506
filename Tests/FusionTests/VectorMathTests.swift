// The vectorised exp against Foundation's, over the range softmax and sigmoid use.
import XCTest
import Foundation
@testable import Fusion

final class VectorMathTests: XCTestCase {
    func testExpMatchesFoundationWithinFourUlp() {
        var worst: Float = 0, worstAt: Float = 0
        var x: Float = -87
        while x < 88 {
            let expected = Foundation.exp(x), actual = fastExp(x)
            let ulps = abs(actual - expected) / expected.ulp
            if ulps > worst { worst = ulps; worstAt = x }
            x += 0.0137
        }
        XCTAssertLessThanOrEqual(worst, 4, "fastExp is \(worst) ulp off at x = \(worstAt)")
        XCTAssertEqual(fastExp(-.infinity), 0)
        XCTAssertEqual(fastExp(-100), 0)
        XCTAssertEqual(fastExp(0), 1)
    }

    func testRowHelpersAgreeWithScalarLoops() {
        let n = 21  // two full blocks of eight and a tail
        let x = testValues(n, seed: 5, range: -4...4)
        x.withUnsafeBufferPointer { x in
            let p = x.baseAddress!
            XCTAssertEqual(maximum(p, n), x.max()!)
            let expected = x.reduce(Float(0)) { $0 + Foundation.exp($1 - 1) }
            XCTAssertEqual(sumOfExponentials(p, minus: 1, n), expected, accuracy: 1e-5 * expected)
            var out = [Float](repeating: 0, count: n)
            let total = exponentiate(p, minus: 1, into: &out, n)
            XCTAssertEqual(total, expected, accuracy: 1e-5 * expected)
            for i in 0..<n { XCTAssertEqual(out[i], Foundation.exp(x[i] - 1), accuracy: 1e-6 * out[i]) }
        }
    }
}

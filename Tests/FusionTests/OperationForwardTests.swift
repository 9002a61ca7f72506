// Forward values of the fused operations against independent computations: naive loops written here,
// or the composition of simpler operations that the fused version replaces (the oracle stays).
import XCTest
import Foundation
@testable import Fusion

/// Asserts two tensors agree to `tolerance` (absolute, relative to max(1, |expected|)); on failure
/// prints the first differing values and the max difference.
func assertClose(_ actual: Tensor, _ expected: Tensor, tolerance: Float = 1e-5,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "shapes differ", file: file, line: line)
    guard actual.shape == expected.shape else { return }
    var maxDifference: Float = 0
    var firstDifferences: [String] = []
    for i in 0..<actual.count {
        let difference = abs(actual.data[i] - expected.data[i])
        maxDifference = max(maxDifference, difference.isNaN ? .infinity : difference)
        if !(difference <= tolerance * max(1, abs(expected.data[i]))), firstDifferences.count < 5 {
            firstDifferences.append("[\(i)] \(actual.data[i]) vs \(expected.data[i])")
        }
    }
    XCTAssert(firstDifferences.isEmpty, "max difference \(maxDifference): \(firstDifferences.joined(separator: ", "))",
              file: file, line: line)
}

final class OperationForwardTests: XCTestCase {
    func testMatmulAgainstNaiveLoops() {
        let a = testTensor([2, 3, 4], seed: 1, requiresGrad: false), b = testTensor([2, 4, 5], seed: 2, requiresGrad: false)
        let expected = Tensor(zeros: [2, 3, 5])
        for n in 0..<2 { for i in 0..<3 { for j in 0..<5 {
            var s: Float = 0
            for k in 0..<4 { s += a[n, i, k] * b[n, k, j] }
            expected[n, i, j] = s
        } } }
        assertClose(matmul(a, b), expected)
        assertClose(matmul(a.transposed(1, 2).copy(), b, transposeA: true), expected)
        assertClose(matmul(a, b.transposed(1, 2).copy(), transposeB: true), expected)
        let w = testTensor([5, 4], seed: 3, requiresGrad: false)
        assertClose(linear(a, w), matmul(a, w.transposed(0, 1).copy()))
    }

    func testBroadcastingValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), row = Tensor([10, 20, 30], shape: [3])
        let column = Tensor([100, 200], shape: [2, 1])
        XCTAssertEqual((a + row).array, [11, 22, 33, 14, 25, 36])
        XCTAssertEqual((a * column).array, [100, 200, 300, 800, 1000, 1200])
        XCTAssertEqual((column - row).shape, [2, 3])
        XCTAssertEqual((column - row).array, [90, 80, 70, 190, 180, 170])
    }

    func testSoftmaxRowsAndLogSoftmax() {
        let x = testTensor([4, 7], seed: 4, range: -5...5, requiresGrad: false)
        let p = x.softmax()
        for row in 0..<4 {
            let total = (0..<7).reduce(Float(0)) { $0 + p[row, $1] }
            XCTAssertEqual(total, 1, accuracy: 1e-6)
        }
        assertClose(x.logSoftmax(), p.log(), tolerance: 1e-5)
        // Stability: huge logits must not overflow.
        XCTAssertEqual(Tensor([1000, 1000], shape: [1, 2]).softmax().array, [0.5, 0.5])
    }

    func testNormsAgainstComposition() {
        let x = testTensor([3, 8], seed: 5, range: -3...3, requiresGrad: false)
        let w = testTensor([8], seed: 6, range: 0.5...1.5, requiresGrad: false), b = testTensor([8], seed: 7, requiresGrad: false)
        let rms = x / ((x.squared().mean(axis: -1, keepingDimension: true) + 1e-6).sqrt()) * w
        assertClose(rmsNorm(x, weight: w), rms, tolerance: 1e-5)
        let centred = x - x.mean(axis: -1, keepingDimension: true)
        let ln = centred / ((centred.squared().mean(axis: -1, keepingDimension: true) + 1e-5).sqrt()) * w + b
        assertClose(layerNorm(x, weight: w, bias: b), ln, tolerance: 1e-5)
    }

    func testCrossEntropyAgainstComposition() {
        let logits = testTensor([4, 6], seed: 8, range: -3...3, requiresGrad: false)
        let targets: [Int32] = [2, -1, 5, 0]
        let logProbabilities = logits.logSoftmax()
        var expected: Float = 0
        for (row, t) in targets.enumerated() where t >= 0 { expected -= logProbabilities[row, Int(t)] }
        expected /= 3
        XCTAssertEqual(crossEntropy(logits, targets: targets).item, expected, accuracy: 1e-5)
        // z-loss adds z·(log Z)² per counted row.
        var zTerm: Float = 0
        for (row, t) in targets.enumerated() where t >= 0 {
            let logZ = log((0..<6).reduce(Float(0)) { $0 + exp(logits[row, $1]) })
            zTerm += logZ * logZ
        }
        XCTAssertEqual(crossEntropy(logits, targets: targets, zLoss: 0.01).item, expected + 0.01 * zTerm / 3, accuracy: 1e-5)
        XCTAssertEqual(crossEntropy(logits, targets: [-1, -1, -1, -1]).item, 0)
    }

    func testRotaryEmbeddingRotatesPairs() {
        let x = testTensor([1, 2, 1, 4], seed: 9, requiresGrad: false)
        let y = rotaryEmbedding(x, positions: [0, 3])
        for i in 0..<4 { XCTAssertEqual(y[0, 0, 0, i], x[0, 0, 0, i]) }  // position 0: identity
        for i in 0..<2 {  // position 3, pair (i, i+2) rotated by 3·10000^(−2i/4)
            let angle = 3 * Foundation.pow(Float(10_000), -2 * Float(i) / 4)
            let x1 = x[0, 1, 0, i], x2 = x[0, 1, 0, i + 2]
            XCTAssertEqual(y[0, 1, 0, i], x1 * cos(angle) - x2 * sin(angle), accuracy: 1e-5)
            XCTAssertEqual(y[0, 1, 0, i + 2], x1 * sin(angle) + x2 * cos(angle), accuracy: 1e-5)
        }
    }

    func testAttentionAgainstComposition() {
        let (b, t, h, dh) = (2, 6, 2, 4)
        let q = testTensor([b, t, h, dh], seed: 10, requiresGrad: false)
        let k = testTensor([b, t, h, dh], seed: 11, requiresGrad: false)
        let v = testTensor([b, t, h, dh], seed: 12, requiresGrad: false)
        let masks = [AttentionMask(documentIDs: [0, 0, 0, 0, 1, 1], spanIDs: [-1, 2, 2, 2, -1, -1]),
                     AttentionMask(documentIDs: [0, 0, 0, 0, 0, -1])]
        // Composed oracle: per head, softmax(Q Kᵀ/√Dh + bias) V with the bias from `allows`.
        let bias = Tensor(zeros: [b, 1, t, t])
        for s in 0..<b { for i in 0..<t { for j in 0..<t { bias[s, 0, i, j] = masks[s].allows(query: i, key: j) ? 0 : -1e9 } } }
        let qh = q.permuted([0, 2, 1, 3]), kh = k.permuted([0, 2, 1, 3]), vh = v.permuted([0, 2, 1, 3])
        let scores = matmul(qh, kh, transposeB: true) * (1 / Float(dh).squareRoot()) + bias
        let expected = matmul(scores.softmax(), vh).permuted([0, 2, 1, 3])
        assertClose(attention(query: q, key: k, value: v, masks: masks), expected, tolerance: 1e-5)
    }

    func testAttentionMaskPatterns() {
        // Two documents packed in one sequence of 10: doc 0 = text(2) + image(3) + text(1),
        // doc 1 = text(1) + image(2) + padding(1). Rows are queries, columns keys.
        let documents: [Int32] = [0, 0, 0, 0, 0, 0, 1, 1, 1, -1]
        let causal = AttentionMask(documentIDs: documents)
        XCTAssertEqual(causal.picture, """
            x.........
            xx........
            xxx.......
            xxxx......
            xxxxx.....
            xxxxxx....
            ......x...
            ......xx..
            ......xxx.
            .........x
            """)
        let bidirectional = AttentionMask(documentIDs: documents, spanIDs: [-1, -1, 0, 0, 0, -1, -1, 0, 0, -1])
        XCTAssertEqual(bidirectional.picture, """
            x.........
            xx........
            xxxxx.....
            xxxxx.....
            xxxxx.....
            xxxxxx....
            ......x...
            ......xxx.
            ......xxx.
            .........x
            """)
    }

    func testFlopCounterCountsMatrixProducts() {
        let a = testTensor([3, 4], seed: 13, requiresGrad: true), w = testTensor([5, 4], seed: 14, requiresGrad: true)
        let forward = FlopCounter.measure { _ = withoutGradients { linear(a, w) } }
        XCTAssertEqual(forward, 2 * 3 * 4 * 5)
        let y = linear(a, w)
        let backward = FlopCounter.measure { y.backward(gradient: Tensor(repeating: 1, shape: y.shape)) }
        XCTAssertEqual(backward, 2 * (2 * 3 * 4 * 5))
    }
}

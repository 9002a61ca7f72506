// Gradient checks of every differentiable operation against central finite differences
// (see GradientCheck.swift for the method and the tolerances).
import XCTest
@testable import Fusion

/// Values bounded away from 0, for ops with a kink there (relu, abs).
private func awayFromZero(_ shape: [Int], seed: UInt64) -> Tensor {
    let values = testValues(shape.reduce(1, *), seed: seed).map { $0 < 0 ? $0 - 0.1 : $0 + 0.1 }
    return Tensor(values, shape: shape, requiresGrad: true)
}

final class OperationGradientTests: XCTestCase {
    func testGradientCheckCatchesAWrongRule() {
        // A deliberately wrong backward (d(x²) taken as x instead of 2x) must turn the check red.
        func brokenSquare(_ x: Tensor) -> Tensor {
            let out = Tensor(uninitializedShape: x.shape)
            for i in 0..<x.count { out.data[i] = x.data[i] * x.data[i] }
            return out.recordGraph(inputs: [x]) { _, g in
                let gx = x.gradientBuffer()
                for i in 0..<x.count { gx[i] += g.data[i] * x.data[i] }
            }
        }
        let report = gradientCheck([testTensor([3, 4], seed: 1)]) { brokenSquare($0[0]) }
        XCTAssertFalse(report.passed, "the gradient check accepted a backward rule that is off by a factor of 2")
        // …and a transposed-product error in a matmul-shaped rule too.
        func brokenLinear(_ x: Tensor, _ w: Tensor) -> Tensor {
            let y = linear(x.detached(), w.detached())
            return y.recordGraph(inputs: [x, w]) { _, g in
                let dx = withoutGradients { matmul(g, w) }  // right
                let dw = withoutGradients { matmul(x, g, transposeA: true) }  // wrong: [in, out], should be [out, in]
                for i in 0..<x.count { x.gradientBuffer()[i] += dx.data[i] }
                for i in 0..<w.count { w.gradientBuffer()[i] += dw.data[i] }
            }
        }
        let wrong = gradientCheck([testTensor([3, 2], seed: 2), testTensor([2, 2], seed: 3)]) { brokenLinear($0[0], $0[1]) }
        XCTAssertFalse(wrong.passed)
    }

    func testBinaryArithmeticSameShape() {
        let a = testTensor([2, 3], seed: 1), b = testTensor([2, 3], seed: 2, range: 0.5...2)
        assertGradientsMatch([a, b]) { $0[0] + $0[1] }
        assertGradientsMatch([a, b]) { $0[0] - $0[1] }
        assertGradientsMatch([a, b]) { $0[0] * $0[1] }
        assertGradientsMatch([a, b]) { $0[0] / $0[1] }
    }

    func testBinaryArithmeticBroadcast() {
        let a = testTensor([2, 3, 4], seed: 1), row = testTensor([4], seed: 2, range: 0.5...2)
        let column = testTensor([2, 1, 4], seed: 3, range: 0.5...2), scalar = testTensor([1], seed: 4, range: 0.5...2)
        for b in [row, column, scalar] {
            assertGradientsMatch([a, b]) { $0[0] + $0[1] }
            assertGradientsMatch([a, b]) { $0[1] - $0[0] }
            assertGradientsMatch([a, b]) { $0[0] * $0[1] }
            assertGradientsMatch([a, b]) { $0[0] / $0[1] }
        }
        // Both operands broadcast: [3, 1] with [1, 4].
        assertGradientsMatch([testTensor([3, 1], seed: 5), testTensor([1, 4], seed: 6)]) { $0[0] * $0[1] }
    }

    func testScalarAndUnaryOperations() {
        let x = testTensor([3, 4], seed: 7)
        let positive = testTensor([3, 4], seed: 8, range: 0.5...2)
        assertGradientsMatch([x]) { $0[0] * 3 + 1 }
        assertGradientsMatch([x]) { -$0[0] / 2 - 1 }
        assertGradientsMatch([x]) { $0[0].exp() }
        assertGradientsMatch([positive]) { $0[0].log() }
        assertGradientsMatch([positive]) { $0[0].sqrt() }
        assertGradientsMatch([x]) { $0[0].tanh() }
        assertGradientsMatch([x]) { $0[0].sigmoid() }
        assertGradientsMatch([x]) { $0[0].squared() }
        assertGradientsMatch([awayFromZero([3, 4], seed: 9)]) { $0[0].relu() }
        assertGradientsMatch([awayFromZero([3, 4], seed: 10)]) { $0[0].abs() }
        assertGradientsMatch([testTensor([3, 4], seed: 11, range: -3...3)]) { $0[0].silu() }
        assertGradientsMatch([testTensor([3, 4], seed: 12, range: -3...3)]) { $0[0].gelu() }
        assertGradientsMatch([testTensor([3, 4], seed: 13, range: -3...3), testTensor([3, 4], seed: 14)]) { swiglu($0[0], $0[1]) }
    }

    func testReductions() {
        let x = testTensor([2, 3, 4], seed: 15)
        assertGradientsMatch([x]) { $0[0].sum() }
        assertGradientsMatch([x]) { $0[0].mean() }
        for axis in 0..<3 {
            assertGradientsMatch([x]) { $0[0].sum(axis: axis) }
            assertGradientsMatch([x]) { $0[0].mean(axis: axis, keepingDimension: true) }
        }
    }

    func testShapeOperations() {
        let x = testTensor([2, 3, 4], seed: 16)
        assertGradientsMatch([x]) { $0[0].reshaped([6, 4]) * $0[0].reshaped([6, 4]) }
        assertGradientsMatch([x]) { $0[0].permuted([2, 0, 1]) }
        assertGradientsMatch([x]) { $0[0].transposed(0, 2) }
        assertGradientsMatch([x]) { $0[0].narrow(axis: 1, start: 1, length: 2) }
        assertGradientsMatch([x, testTensor([2, 2, 4], seed: 17)]) { concatenate([$0[0], $0[1]], axis: 1) }
        assertGradientsMatch([x, testTensor([2, 3, 1], seed: 18)]) { concatenate([$0[1], $0[0]], axis: -1) }
    }

    func testMatrixProducts() {
        let x = testTensor([2, 3, 4], seed: 19), w = testTensor([5, 4], seed: 20)
        assertGradientsMatch([x, w]) { linear($0[0], $0[1]) }
        let a = testTensor([2, 3, 4], seed: 21), b = testTensor([2, 4, 5], seed: 22)
        assertGradientsMatch([a, b]) { matmul($0[0], $0[1]) }
        let at = testTensor([2, 4, 3], seed: 23), bt = testTensor([2, 5, 4], seed: 24)
        assertGradientsMatch([at, b]) { matmul($0[0], $0[1], transposeA: true) }
        assertGradientsMatch([a, bt]) { matmul($0[0], $0[1], transposeB: true) }
        assertGradientsMatch([at, bt]) { matmul($0[0], $0[1], transposeA: true, transposeB: true) }
        // A 2-D right operand shared by the whole batch, in each transpose form.
        let shared = testTensor([4, 5], seed: 25), sharedT = testTensor([5, 4], seed: 26)
        assertGradientsMatch([a, shared]) { matmul($0[0], $0[1]) }
        assertGradientsMatch([a, sharedT]) { matmul($0[0], $0[1], transposeB: true) }
        assertGradientsMatch([at, shared]) { matmul($0[0], $0[1], transposeA: true) }
    }

    func testSoftmaxFamily() {
        let x = testTensor([3, 5], seed: 27, range: -2...2)
        assertGradientsMatch([x]) { $0[0].softmax() }
        assertGradientsMatch([x]) { $0[0].logSoftmax() }
    }

    func testNorms() {
        let x = testTensor([3, 6], seed: 28, range: -2...2)
        let w = testTensor([6], seed: 29, range: 0.5...1.5), bias = testTensor([6], seed: 30)
        assertGradientsMatch([x, w]) { rmsNorm($0[0], weight: $0[1]) }
        assertGradientsMatch([x]) { rmsNorm($0[0], weight: nil) }
        assertGradientsMatch([x, w, bias]) { layerNorm($0[0], weight: $0[1], bias: $0[2]) }
        assertGradientsMatch([x]) { layerNorm($0[0], weight: nil, bias: nil) }
    }

    func testRotaryEmbedding() {
        let x = testTensor([2, 3, 2, 4], seed: 31)
        assertGradientsMatch([x]) { rotaryEmbedding($0[0], positions: [0, 1, 2, 5, 0, 1]) }
        assertGradientsMatch([x]) { rotaryEmbedding($0[0], positions: [3, 4, 5]) }
    }

    func testRotaryQKV() {
        let qkv = testTensor([2, 3, 3, 2, 4], seed: 46), wq = testTensor([4], seed: 47, range: 0.5...1.5), wk = testTensor([4], seed: 48, range: 0.5...1.5)
        assertGradientsMatch([qkv, wq, wk]) { rotaryQKV($0[0], queryNorm: $0[1], keyNorm: $0[2], positions: [0, 1, 2, 5, 0, 1]) }
        assertGradientsMatch([qkv]) { rotaryQKV($0[0], queryNorm: nil, keyNorm: nil, positions: [3, 4, 5]) }
        // Heads of 20: one eight-lane step and a scalar tail in every loop.
        let wide = testTensor([1, 2, 3, 1, 20], seed: 50), wq20 = testTensor([20], seed: 51, range: 0.5...1.5)
        let wk20 = testTensor([20], seed: 52, range: 0.5...1.5)
        assertGradientsMatch([wide, wq20, wk20]) { rotaryQKV($0[0], queryNorm: $0[1], keyNorm: $0[2], positions: [1, 7]) }
    }

    func testPackedAttention() {
        let qkv = testTensor([2, 5, 3, 2, 3], seed: 49)
        let packed = AttentionMask(documentIDs: [0, 0, 0, 1, 1], spanIDs: [-1, 0, 0, -1, -1])
        assertGradientsMatch([qkv]) { attention(packed: $0[0], masks: [.causal(length: 5), packed]) }
    }

    func testEmbedding() {
        let table = testTensor([5, 3], seed: 32)
        assertGradientsMatch([table]) { embedding($0[0], ids: [4, 0, 4, 2]) }
    }

    func testLosses() {
        let logits = testTensor([4, 5], seed: 33, range: -2...2)
        assertGradientsMatch([logits]) { crossEntropy($0[0], targets: [1, 4, -1, 0]) }
        assertGradientsMatch([logits]) { crossEntropy($0[0], targets: [1, 4, 3, 0], zLoss: 0.1) }
        assertGradientsMatch([testTensor([2, 3], seed: 34), testTensor([2, 3], seed: 35)]) { meanSquaredError($0[0], $0[1]) }
    }

    func testAttentionWithEachMaskKind() {
        let q = testTensor([2, 5, 2, 3], seed: 36), k = testTensor([2, 5, 2, 3], seed: 37), v = testTensor([2, 5, 2, 3], seed: 38)
        let causal = AttentionMask.causal(length: 5)
        let packed = AttentionMask(documentIDs: [0, 0, 0, 1, 1], spanIDs: [-1, 0, 0, -1, -1])
        let padded = AttentionMask(documentIDs: [0, 0, 0, 0, -1], spanIDs: [-1, 1, 1, 1, -1])
        assertGradientsMatch([q, k, v]) { attention(query: $0[0], key: $0[1], value: $0[2], masks: [causal, packed]) }
        assertGradientsMatch([q, k, v]) { attention(query: $0[0], key: $0[1], value: $0[2], masks: [padded, causal]) }
    }

    func testSmallCompositeNetwork() {
        // embedding → RMSNorm → q/k/v projections → RoPE → attention → output projection → SwiGLU → logits → CE
        let (t, d, heads, vocab) = (4, 4, 2, 6)
        let table = testTensor([vocab, d], seed: 40), wq = testTensor([d, d], seed: 41), wk = testTensor([d, d], seed: 42)
        let wv = testTensor([d, d], seed: 43), wo = testTensor([d, d], seed: 44), norm = testTensor([d], seed: 45, range: 0.5...1.5)
        let gate = testTensor([6, d], seed: 46), up = testTensor([6, d], seed: 47), down = testTensor([vocab, 6], seed: 48)
        let ids: [Int32] = [1, 3, 5, 2], targets: [Int32] = [3, 5, 2, 0]
        let mask = AttentionMask(documentIDs: [0, 0, 0, 0], spanIDs: [-1, 0, 0, -1])
        assertGradientsMatch([table, wq, wk, wv, wo, norm, gate, up, down]) { p in
            let x = embedding(p[0], ids: ids).reshaped([1, t, d])
            let h = rmsNorm(x, weight: p[5])
            let q = rotaryEmbedding(linear(h, p[1]).reshaped([1, t, heads, d / heads]), positions: [0, 1, 2, 3])
            let k = rotaryEmbedding(linear(h, p[2]).reshaped([1, t, heads, d / heads]), positions: [0, 1, 2, 3])
            let v = linear(h, p[3]).reshaped([1, t, heads, d / heads])
            let y = x + linear(attention(query: q, key: k, value: v, masks: [mask]).reshaped([1, t, d]), p[4])
            let logits = linear(swiglu(linear(y, p[6]), linear(y, p[7])), p[8])
            return crossEntropy(logits.reshaped([t, vocab]), targets: targets, zLoss: 1e-2)
        }
    }
}

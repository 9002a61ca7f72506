// The fast kernels of issue 7 against the simple versions they replace (kept as oracles):
// blocked attention vs the dense T×T kernel, key intervals vs `AttentionMask.allows`, cached RoPE
// tables vs the formula, and gradient hand-over (reshape, residual add) vs plain accumulation.
//
// Tolerances: the blocked kernel sums the same products as the dense one but over fewer (exactly
// zero) terms and in other sgemm blockings, so values agree to Float32 rounding of O(1) sums over
// ≤ 200 terms: 1e-5 absolute on outputs of order 1, 1e-4 on gradients (sums of T such products).
import XCTest
@testable import Fusion

final class KernelPerfTests: XCTestCase {
    /// Masks of every kind the recipes build, at a length that is not a multiple of the block size.
    private func masks(length t: Int) -> [AttentionMask] {
        var documents = [Int32](repeating: 0, count: t), spans = [Int32](repeating: -1, count: t)
        for i in 0..<t { documents[i] = i < t / 3 ? 0 : (i < t - 5 ? 1 : -1) }  // two documents, padding
        for i in 10..<40 where i < t / 3 { spans[i] = 0 }                     // an image in document 0
        for i in (t / 3 + 7)..<(t / 3 + 70) { spans[i] = 3 }                   // and one in document 1
        let bidirectional = AttentionMask(documentIDs: Array(repeating: 0, count: t), spanIDs: Array(repeating: 0, count: t))
        return [.causal(length: t), AttentionMask(documentIDs: documents), AttentionMask(documentIDs: documents, spanIDs: spans),
                bidirectional]
    }

    func testKeyIntervalsMatchTheMask() {
        var cases = masks(length: 150)
        // Random layouts: runs of documents (some padding) and spans.
        var state: UInt64 = 7
        func next(_ n: Int) -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(state >> 33) % n }
        for _ in 0..<40 {
            var documents: [Int32] = [], spans: [Int32] = []
            var document: Int32 = 0
            while documents.count < 30 {
                let length = 1 + next(8), padding = next(4) == 0
                for _ in 0..<length {
                    documents.append(padding ? -1 : document)
                    spans.append(next(3) == 0 ? Int32(next(2)) : -1)
                }
                if !padding { document += 1 }
            }
            cases.append(AttentionMask(documentIDs: documents, spanIDs: spans))
        }
        var exact = 0
        for mask in cases {
            guard let (lo, hi) = mask.keyIntervals() else {
                // Not one interval per row: some row's allowed keys must then have a gap, or ids repeat.
                continue
            }
            exact += 1
            for i in 0..<mask.length {
                for j in 0..<mask.length {
                    XCTAssertEqual(mask.allows(query: i, key: j), j >= lo[i] && j < hi[i],
                                   "query \(i), key \(j) of\n\(mask.picture)")
                }
            }
        }
        XCTAssertGreaterThan(exact, 10, "too few random masks were interval-exact to test anything")
        // A document split in two runs, and a span split in two runs, are refused.
        XCTAssertNil(AttentionMask(documentIDs: [0, 0, 1, 0]).keyIntervals())
        XCTAssertNil(AttentionMask(documentIDs: [0, 0, 0, 0, 0], spanIDs: [1, 1, -1, 1, -1]).keyIntervals())
    }

    func testBlockedAttentionMatchesDenseForEachMaskKind() {
        let (t, h, dh) = (150, 2, 8)
        let kinds = masks(length: t)
        let b = kinds.count
        let q = testTensor([b, t, h, dh], seed: 1), k = testTensor([b, t, h, dh], seed: 2), v = testTensor([b, t, h, dh], seed: 3)
        let cotangent = testTensor([b, t, h, dh], seed: 4, requiresGrad: false)
        func run(_ f: (Tensor, Tensor, Tensor) -> Tensor) -> [Tensor] {
            for x in [q, k, v] { x.zeroGrad() }
            let y = f(q, k, v)
            y.backward(gradient: cotangent)
            return [y.detached().copy(), q.grad!.copy(), k.grad!.copy(), v.grad!.copy()]
        }
        let fast = run { attention(query: $0, key: $1, value: $2, masks: kinds) }
        let oracle = run { denseAttention(query: $0, key: $1, value: $2, masks: kinds) }
        assertClose(fast[0], oracle[0], tolerance: 1e-5)
        for i in 1...3 { assertClose(fast[i], oracle[i], tolerance: 1e-4) }

        // Gradients already accumulating (a second backward adds, it does not overwrite).
        let y = attention(query: q, key: k, value: v, masks: kinds)
        y.backward(gradient: cotangent)
        for (x, expected) in zip([q, k, v], fast[1...3]) { assertClose(x.grad!, expected * 2, tolerance: 2e-4) }
    }

    /// The packed form reads Q, K, V in place from one [B, T, 3, H, Dh] tensor; it must give the
    /// three-tensor form's values and gradients, fresh and accumulating, for every mask kind, and fall
    /// back to the dense kernel (through copies of the three parts) for a mask that is not intervals.
    func testPackedAttentionMatchesThreeTensors() {
        let (t, h, dh) = (150, 2, 8)
        let kinds = masks(length: t)
        let b = kinds.count
        let qkv = testTensor([b, t, 3, h, dh], seed: 11)
        let cotangent = testTensor([b, t, h, dh], seed: 12, requiresGrad: false)
        let part = { (i: Int) in qkv.detached().narrow(axis: 2, start: i, length: 1).reshaped([b, t, h, dh]) }
        let (q, k, v) = (part(0), part(1), part(2))
        for x in [q, k, v] { x.requiresGrad = true }
        let separate = attention(query: q, key: k, value: v, masks: kinds)
        separate.backward(gradient: cotangent)
        let expectedGradient = concatenate([q.grad!, k.grad!, v.grad!].map { $0.reshaped([b, t, 1, h, dh]) }, axis: 2)

        let packed = attention(packed: qkv, masks: kinds)
        assertClose(packed, separate, tolerance: 1e-6)
        packed.backward(gradient: cotangent)
        assertClose(qkv.grad!, expectedGradient, tolerance: 1e-6)
        attention(packed: qkv, masks: kinds).backward(gradient: cotangent)
        assertClose(qkv.grad!, expectedGradient * 2, tolerance: 2e-5)

        let odd = AttentionMask(documentIDs: [0, 0, 1, 1, 0, 0, 0, 0, 0])
        let small = testTensor([1, 9, 3, 1, 4], seed: 13)
        let parts = (0..<3).map { small.detached().narrow(axis: 2, start: $0, length: 1).reshaped([1, 9, 1, 4]) }
        assertClose(attention(packed: small, masks: [odd]), denseAttention(query: parts[0], key: parts[1], value: parts[2], masks: [odd]))
    }

    /// One pass of QK-norm and RoPE over packed Q/K/V against the separate operations (the oracle).
    /// Heads of 8 take the scalar loops only; heads of 36 the eight-lane ones with a scalar tail (18 pairs).
    func testRotaryQKVMatchesNormThenRotary() {
        let (b, t, h) = (2, 5, 3)
        let positions: [Int32] = [0, 1, 2, 3, 4, 0, 1, 2, 0, 1]
        for dh in [8, 36] {
            let cotangent = testTensor([b, t, 3, h, dh], seed: 20, requiresGrad: false)
            for normalised in [true, false] {
                let qkv = testTensor([b, t, 3, h, dh], seed: 21)
                let wq = testTensor([dh], seed: 22, range: 0.5...1.5), wk = testTensor([dh], seed: 23, range: 0.5...1.5)
                let fused = rotaryQKV(qkv, queryNorm: normalised ? wq : nil, keyNorm: normalised ? wk : nil, positions: positions)
                fused.backward(gradient: cotangent)

                let x = qkv.detached()
                x.requiresGrad = true
                let wq2 = wq.detached(), wk2 = wk.detached()
                wq2.requiresGrad = true; wk2.requiresGrad = true
                let part = { (i: Int) in x.narrow(axis: 2, start: i, length: 1).reshaped([b, t, h, dh]) }
                var q = part(0), k = part(1)
                if normalised { q = rmsNorm(q, weight: wq2); k = rmsNorm(k, weight: wk2) }
                let oracle = concatenate([rotaryEmbedding(q, positions: positions), rotaryEmbedding(k, positions: positions), part(2)]
                    .map { $0.reshaped([b, t, 1, h, dh]) }, axis: 2)
                oracle.backward(gradient: cotangent)
                assertClose(fused, oracle, tolerance: 1e-5)
                assertClose(qkv.grad!, x.grad!, tolerance: 1e-5)
                if normalised {
                    assertClose(wq.grad!, wq2.grad!, tolerance: 1e-4)
                    assertClose(wk.grad!, wk2.grad!, tolerance: 1e-4)
                } else {
                    XCTAssertNil(wq.grad)
                }
            }
        }
    }

    /// `BLAS.sgemm` splits a large product into panels over the threads; every element must come out
    /// bit for bit as one unsplit call computes it, for each transpose combination, along rows (m ≥ n)
    /// and along columns (n > m), with ragged panel edges, strided operands and beta = 1.
    func testSplitProductsEqualOneCallBitForBit() {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        // Three cases of ≥ 3 panels' worth, and one just large enough for two (panels of 64 and 72 rows).
        for (m, n, k) in [(2_400, 70, 40), (50, 3_300, 40), (1_517, 300, 21), (136, 100, 210)] {
            for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
                let (lda, ldb, ldc) = ((transA ? m : k) + 3, (transB ? k : n) + 5, n + 2)  // padded rows
                let a = testTensor([transA ? k : m, lda], seed: 21, requiresGrad: false)
                let b = testTensor([transB ? n : k, ldb], seed: 22, requiresGrad: false)
                let start = testTensor([m, ldc], seed: 23, requiresGrad: false)
                func product(threads: Int, beta: Float) -> [Float] {
                    Parallel.threadCount = threads
                    let c = Tensor(start.array, shape: start.shape)
                    BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a.data, lda: lda,
                               b: b.data, ldb: ldb, beta: beta, c: c.data, ldc: ldc)
                    return c.array
                }
                for beta: Float in [0, 1] {
                    let single = product(threads: 1, beta: beta)
                    for threads in [2, 3] {
                        Parallel.threadCount = threads
                        if let (alongRows, _) = BLAS.splitAxis(m: m, n: n), alongRows == (m >= n) {  // split as intended
                            XCTAssertEqual(BLAS.panelCount(m: m, n: n, k: k), m * n * k >= 3 * BLAS.panelMultiplyAdds ? threads : 2)
                        }
                        assertBitwiseEqual(product(threads: threads, beta: beta), single,
                                           "m \(m) n \(n) k \(k) \(transA ? "T" : "N")\(transB ? "T" : "N") beta \(beta), \(threads) panels")
                    }
                }
                // The padding between rows of C is never written.
                let c = product(threads: 2, beta: 0)
                for row in 0..<m { XCTAssertEqual(Array(c[(row * ldc + n)..<((row + 1) * ldc)]), Array(start.array[(row * ldc + n)..<((row + 1) * ldc)])) }
            }
        }
        // OpenBLAS's own threading (the bench's comparison) computes the same large product — to rounding
        // only: it splits at its own edges, which its Zen kernels round differently — and our panels work
        // as before, bit for bit, once its workers are shut down again.
        Parallel.threadCount = 2
        let (a, b) = (testTensor([600, 300], seed: 24, requiresGrad: false), testTensor([300, 500], seed: 25, requiresGrad: false))
        let panels = matmul(a, b)
        assertClose(BLAS.withOpenBLASThreads(2) { matmul(a, b) }, panels, tolerance: 1e-5)
        assertBitwiseEqual(matmul(a, b).array, panels.array, "panels after OpenBLAS threads")

        XCTAssertEqual(BLAS.panelCount(m: 100, n: 100, k: 100), 1, "a small product stays on the calling thread")
        XCTAssertEqual(BLAS.panelCount(m: 136, n: 100, k: 210), 2, "each part keeps more than 10⁶ multiply-adds")
        XCTAssertEqual(BLAS.panelCount(m: 120, n: 100, k: 1_000), 1, "too narrow for two panels of 64")
        XCTAssertEqual(BLAS.panelCount(m: 8, n: 120, k: 100_000), 1, "too narrow to split")
        XCTAssertEqual(BLAS.panelBoundary(1, of: 2, extent: 1_000, tile: 16), 496)
        XCTAssertEqual(BLAS.panelBoundary(1, of: 2, extent: 1_000, tile: 48), 480)
        XCTAssertEqual(BLAS.panelBoundary(2, of: 2, extent: 1_000, tile: 16), 1_000)
        // Every kernel OpenBLAS has picked so far splits rows (SkylakeX at 16, Zen at 48): a product of
        // many rows must not fall back to one thread.
        XCTAssertNotNil(BLAS.panelTiles.rows, "no row tile reproduces the one-call product on \(BLAS.coreName)")
    }

    func testBlockedAttentionFallsBackForOtherMasks() {
        let (t, h, dh) = (9, 1, 4)
        let odd = AttentionMask(documentIDs: [0, 0, 1, 1, 0, 0, 0, 0, 0])  // document 0 in two runs
        XCTAssertNil(odd.keyIntervals())
        let q = testTensor([1, t, h, dh], seed: 5), k = testTensor([1, t, h, dh], seed: 6), v = testTensor([1, t, h, dh], seed: 7)
        assertClose(attention(query: q, key: k, value: v, masks: [odd]), denseAttention(query: q, key: k, value: v, masks: [odd]))
    }

    func testBlockedAttentionGradientAcrossBlocks() {
        // T = 70 spans two query blocks (64 + 6), so the cross-block dK/dV sums are checked too.
        let t = 70
        var documents = [Int32](repeating: 0, count: t), spans = [Int32](repeating: -1, count: t)
        for i in 40..<t { documents[i] = 1 }
        for i in 50..<66 { spans[i] = 0 }
        let mask = AttentionMask(documentIDs: documents, spanIDs: spans)
        XCTAssertNotNil(mask.keyIntervals())
        let q = testTensor([1, t, 1, 2], seed: 8), k = testTensor([1, t, 1, 2], seed: 9), v = testTensor([1, t, 1, 2], seed: 10)
        assertGradientsMatch([q, k, v]) { attention(query: $0[0], key: $0[1], value: $0[2], masks: [mask]) }
    }

    func testBlockedAttentionCountsOnlyComputedScores() {
        let (t, h, dh) = (128, 1, 4)
        let q = testTensor([1, t, h, dh], seed: 11, requiresGrad: false)
        let causal = FlopCounter.measure { _ = attention(query: q, key: q, value: q, masks: [.causal(length: t)]) }
        let full = FlopCounter.measure {
            _ = attention(query: q, key: q, value: q, masks: [AttentionMask(documentIDs: Array(repeating: 0, count: t),
                                                                             spanIDs: Array(repeating: 0, count: t))])
        }
        // Causal with blocks of 64: rectangles 64×64 and 64×128 of the 128×128 scores.
        XCTAssertEqual(causal, Int64(4 * dh * (64 * 64 + 64 * 128) + 5 * (t * (t + 1) / 2)))
        XCTAssertEqual(full, Int64(4 * dh * t * t + 5 * t * t))
    }

    func testRotaryTablesMatchTheFormulaAsTheyGrow() {
        let (t, h, dh) = (3, 2, 6)
        let x = testTensor([1, t, h, dh], seed: 12, requiresGrad: false)
        for positions in [[Int32]([0, 1, 2]), [5, 300, 1000], [7, 0, 2]] {
            let y = rotaryEmbedding(x, positions: positions, base: 500)
            for (token, position) in positions.enumerated() {
                for head in 0..<h {
                    for i in 0..<(dh / 2) {
                        let angle = Float(position) * Foundation.pow(500, -2 * Float(i) / Float(dh))
                        let (x1, x2) = (x[0, token, head, i], x[0, token, head, i + dh / 2])
                        XCTAssertEqual(y[0, token, head, i], x1 * Foundation.cos(angle) - x2 * Foundation.sin(angle), accuracy: 1e-5)
                        XCTAssertEqual(y[0, token, head, i + dh / 2], x1 * Foundation.sin(angle) + x2 * Foundation.cos(angle), accuracy: 1e-5)
                    }
                }
            }
        }
    }

    func testGradientHandOverKeepsAccumulating() {
        // x feeds a reshape, a residual add with itself and a product: every path's gradient must
        // survive the hand-over of buffers (d/dx Σ w·((x + x)·x + reshape(x)) = w·(4x + 1)).
        let x = testTensor([2, 3], seed: 13)
        let w = testTensor([2, 3], seed: 14, requiresGrad: false)
        let y = (x + x) * x + x.reshaped([6]).reshaped([2, 3])
        y.backward(gradient: w)
        for i in 0..<6 { XCTAssertEqual(x.grad!.data[i], w.data[i] * (4 * x.data[i] + 1), accuracy: 1e-5) }
        assertGradientsMatch([testTensor([2, 3], seed: 15), testTensor([2, 3], seed: 16)]) { p in
            let s = p[0] + p[1]
            return (s + p[0]).reshaped([3, 2]) * s.reshaped([3, 2])
        }
    }
}

final class FusedProjectionPerfTests: XCTestCase {
    func testStackedLinearMatchesSeparateProjections() {
        let x = testTensor([2, 3, 4], seed: 20), w1 = testTensor([5, 4], seed: 21), w2 = testTensor([3, 4], seed: 22)
        let cotangent = testTensor([2, 3, 8], seed: 23, requiresGrad: false)
        func run(_ f: () -> Tensor) -> [Tensor] {
            for t in [x, w1, w2] { t.zeroGrad() }
            let y = f()
            y.backward(gradient: cotangent)
            return [y.detached().copy(), x.grad!.copy(), w1.grad!.copy(), w2.grad!.copy()]
        }
        let fused = run { linear(x, stacked: [w1, w2]) }
        let oracle = run { concatenate([linear(x, w1), linear(x, w2)], axis: -1) }
        for (a, b) in zip(fused, oracle) { assertClose(a, b, tolerance: 1e-5) }
        assertGradientsMatch([x, w1, w2]) { linear($0[0], stacked: [$0[1], $0[2]]) }
    }

    func testSwigluOfStackedHalvesMatchesSwiglu() {
        let x = testTensor([3, 2, 8], seed: 24, range: -3...3)
        let cotangent = testTensor([3, 2, 4], seed: 25, requiresGrad: false)
        func run(_ f: () -> Tensor) -> [Tensor] {
            x.zeroGrad()
            let y = f()
            y.backward(gradient: cotangent)
            return [y.detached().copy(), x.grad!.copy()]
        }
        let fused = run { swiglu(gateAndUp: x) }
        let oracle = run { swiglu(x.narrow(axis: -1, start: 0, length: 4), x.narrow(axis: -1, start: 4, length: 4)) }
        for (a, b) in zip(fused, oracle) { assertClose(a, b, tolerance: 1e-6) }
        assertGradientsMatch([x]) { swiglu(gateAndUp: $0[0]) }
    }

    /// The MLP's SwiGLU and down projection with the SwiGLU output recomputed in the backward pass: the
    /// same bits as the composition it replaces (output and both gradients, accumulating into existing
    /// gradients too), the same FLOPs counted, and finite differences. (The memory it saves: bench's peak RSS.)
    func testSwigluProjectionEqualsTheCompositionAndKeepsNoHiddenActivation() {
        let x = testTensor([3, 2, 8], seed: 26, range: -3...3), w = testTensor([5, 4], seed: 27)
        let cotangent = testTensor([3, 2, 5], seed: 28, requiresGrad: false)
        func run(twice: Bool, _ f: () -> Tensor) -> (values: [[Float]], flops: Int64) {
            for t in [x, w] { t.zeroGrad() }
            var y = Tensor(zeros: [1])
            let flops = FlopCounter.measure {
                for _ in 0..<(twice ? 2 : 1) {
                    y = f()
                    y.backward(gradient: cotangent)
                }
            }
            return ([y.array, x.grad!.array, w.grad!.array], flops)
        }
        for twice in [false, true] {
            let fused = run(twice: twice) { swigluProjection(gateAndUp: x, w) }
            let oracle = run(twice: twice) { linear(swiglu(gateAndUp: x), w) }
            for (i, (a, b)) in zip(fused.values, oracle.values).enumerated() {
                assertBitwiseEqual(a, b, ["output", "dx", "dW"][i] + (twice ? ", accumulated twice" : ""))
            }
            XCTAssertEqual(fused.flops, oracle.flops)
        }
        assertGradientsMatch([x, w]) { swigluProjection(gateAndUp: $0[0], $0[1]) }
    }
}

// Tests of the training utilities: the Philox generator, module parameter naming, AdamW, the
// warm-up + cosine schedule and global-norm gradient clipping.
//
// Statistical tests use fixed seeds, so they are deterministic; their bounds are set so that a
// correct generator would fail them for a random seed with probability ≲ 10⁻⁶ (5 standard errors,
// or the χ² quantile at p = 10⁻⁶), while the bugs they target (off-by-one scaling, modulo bias,
// a wrong Box–Muller branch, reused counters) move the statistic by tens of standard errors.

import XCTest
@testable import Fusion

final class TrainingUtilityTests: XCTestCase {

    // MARK: Helpers

    /// Fails with the first differing values and the max difference, as STYLE.md asks.
    func assertClose(_ actual: [Float], _ expected: [Double], tolerance: (Double) -> Double,
                     _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, "\(what): count", file: file, line: line)
        var maxDiff = 0.0, bad: [String] = []
        for (i, (a, e)) in zip(actual, expected).enumerated() {
            let d = abs(Double(a) - e)
            maxDiff = max(maxDiff, d)
            if !(d <= tolerance(e)) && bad.count < 5 { bad.append("[\(i)] got \(a), want \(e), diff \(d)") }
        }
        if !bad.isEmpty {
            XCTFail("\(what): \(bad.joined(separator: "; ")); max diff \(maxDiff)", file: file, line: line)
        }
    }

    /// The upper p = 10⁻⁶ quantile of χ² with k degrees of freedom (Wilson–Hilferty approximation,
    /// accurate to a few percent in this tail for k ≥ 4; z₁₀⁻⁶ = 4.753).
    func chiSquareBound(degreesOfFreedom k: Double) -> Double {
        let a = 2 / (9 * k)
        return k * pow(1 - a + 4.753 * a.squareRoot(), 3)
    }

    func chiSquare(_ counts: [Int], expected: Double) -> Double {
        counts.reduce(0) { $0 + (Double($1) - expected) * (Double($1) - expected) / expected }
    }

    func floats(_ g: inout RandomGenerator, _ n: Int) -> [Float] { (0..<n).map { _ in g.nextFloat() } }

    // MARK: RandomGenerator

    func testPhiloxMatchesRandom123KnownAnswers() {
        // Random123 1.09, tests/kat_vectors, "philox4x32 10": counter words, key words, output words.
        let cases: [((UInt32, UInt32, UInt32, UInt32), (UInt32, UInt32), [UInt32])] = [
            ((0, 0, 0, 0), (0, 0), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
            ((0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff), (0xffff_ffff, 0xffff_ffff),
             [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
            ((0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), (0xa409_3822, 0x299f_31d0),
             [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]),
        ]
        for (counter, key, expected) in cases {
            let out = RandomGenerator.philox(counter, key: key)
            XCTAssertEqual([out.0, out.1, out.2, out.3], expected)
        }
        // The generator's layout: seed 0, stream 0, block 0 is the all-zero vector above.
        var g = RandomGenerator(seed: 0)
        XCTAssertEqual(g.next(), 0xe169_c58d_6627_e8d5)
        XCTAssertEqual(g.next(), 0x9b00_dbd8_bc57_ac4c)
    }

    func testDeterminismAndSeedSensitivity() {
        var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42), c = RandomGenerator(seed: 43)
        let sa = (0..<100).map { _ in a.next() }, sb = (0..<100).map { _ in b.next() }
        let sc = (0..<100).map { _ in c.next() }
        XCTAssertEqual(sa, sb)
        XCTAssertEqual(zip(sa, sc).filter { $0 == $1 }.count, 0, "seeds 42 and 43 share values")
    }

    func testStateRoundTripContinuesExactly() throws {
        var g = RandomGenerator(seed: 7).split(key: "data")
        // Leave the position mid-block and odd, through every kind of draw.
        _ = g.next(); _ = g.nextFloat(); _ = g.normal(); _ = g.nextInt(below: 10)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 13)
        defer { buffer.deallocate() }
        g.fill(normal: buffer, count: 13)
        g.fill(uniform: buffer, count: 5)

        let saved = g.state
        let continued = (0..<50).map { _ in g.next() } + [UInt64(g.nextFloat().bitPattern)]
        var restored = try RandomGenerator(state: saved)
        let again = (0..<50).map { _ in restored.next() } + [UInt64(restored.nextFloat().bitPattern)]
        XCTAssertEqual(continued, again)
        XCTAssertEqual(restored.state, g.state)

        XCTAssertThrowsError(try RandomGenerator(state: [1, 2, 3]))
        XCTAssertThrowsError(try RandomGenerator(state: [99, 1, 2, 3]))
    }

    func testUniformMeanAndVariance() {
        // U[0,1): mean ½, variance 1/12. With n = 2²⁰: SE(mean) = √(1/12/n) = 2.8e-4;
        // SE(variance) = √((μ₄ − σ⁴)/n) with μ₄ = 1/80, σ⁴ = 1/144, i.e. √(1/180/n) = 7.3e-5. Bounds: 5 SE.
        let n = 1 << 20
        var g = RandomGenerator(seed: 1)
        let t = Tensor(uninitializedShape: [n])
        g.fill(uniform: t)
        var sum = 0.0, sumSq = 0.0, lo: Float = 1, hi: Float = 0
        for i in 0..<n {
            let x = Double(t.data[i])
            sum += x; sumSq += x * x
            lo = min(lo, t.data[i]); hi = max(hi, t.data[i])
        }
        let mean = sum / Double(n), variance = sumSq / Double(n) - mean * mean
        XCTAssertEqual(mean, 0.5, accuracy: 5 * (1.0 / 12 / Double(n)).squareRoot())
        XCTAssertEqual(variance, 1.0 / 12, accuracy: 5 * (1.0 / 180 / Double(n)).squareRoot())
        XCTAssertGreaterThanOrEqual(lo, 0)
        XCTAssertLessThan(hi, 1)
    }

    func testNormalMomentsAndShape() {
        // N(0,1), n = 2²⁰: SE(mean) = 1/√n = 9.8e-4; SE(variance) = √(2/n) = 1.4e-3, so
        // SE(std) ≈ SE(variance)/2 = 6.9e-4; P(|z| < 1) = 0.682689 with binomial SE √(p(1−p)/n) = 4.5e-4.
        // The last catches a Box–Muller with the wrong radius even when mean and std happen to pass.
        let n = 1 << 20
        var g = RandomGenerator(seed: 2)
        let t = Tensor.randomNormal([n], std: 1, generator: &g)
        var sum = 0.0, sumSq = 0.0, inside = 0
        for i in 0..<n {
            let x = Double(t.data[i])
            sum += x; sumSq += x * x
            if abs(x) < 1 { inside += 1 }
        }
        let mean = sum / Double(n), std = (sumSq / Double(n) - mean * mean).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 5 / Double(n).squareRoot())
        XCTAssertEqual(std, 1, accuracy: 5 * (2 / Double(n)).squareRoot() / 2)
        let p = 0.682_689_492
        XCTAssertEqual(Double(inside) / Double(n), p, accuracy: 5 * (p * (1 - p) / Double(n)).squareRoot())

        // Scalar draws: same moments (n = 2¹⁶, same 5-SE reasoning), mean and std applied by the factory.
        var h = RandomGenerator(seed: 3)
        let m = 1 << 16
        let scalars = (0..<m).map { _ in Double(h.normal()) }
        XCTAssertEqual(scalars.reduce(0, +) / Double(m), 0, accuracy: 5 / Double(m).squareRoot())
        let shifted = Tensor.randomNormal([m], mean: 3, std: 0.5, generator: &h)
        let sMean = shifted.array.reduce(0) { $0 + Double($1) } / Double(m)
        XCTAssertEqual(sMean, 3, accuracy: 5 * 0.5 / Double(m).squareRoot())
    }

    func testUniformBucketsChiSquare() {
        // 100 equal buckets, 200,000 draws: χ² has 99 degrees of freedom (mean 99, sd 14);
        // bound: its p = 10⁻⁶ quantile (≈ 178). Also a lower bound (p = 10⁻⁶ in the lower tail,
        // ≈ 42, by the same approximation with z = −4.753): values too even are a bug too.
        let buckets = 100, n = 200_000
        var counts = [Int](repeating: 0, count: buckets)
        var g = RandomGenerator(seed: 4)
        for _ in 0..<n { counts[Int(g.nextFloat() * Float(buckets))] += 1 }
        let chi2 = chiSquare(counts, expected: Double(n) / Double(buckets))
        let k = Double(buckets - 1), a = 2 / (9 * k)
        XCTAssertLessThan(chi2, chiSquareBound(degreesOfFreedom: k))
        XCTAssertGreaterThan(chi2, k * pow(1 - a - 4.753 * a.squareRoot(), 3))
    }

    func testNextIntIsUnbiased() {
        // Small bound: χ² over 10 values, 9 degrees of freedom, p = 10⁻⁶ bound (≈ 45).
        var g = RandomGenerator(seed: 5)
        var counts = [Int](repeating: 0, count: 10)
        for _ in 0..<100_000 { counts[g.nextInt(below: 10)] += 1 }
        XCTAssertLessThan(chiSquare(counts, expected: 10_000), chiSquareBound(degreesOfFreedom: 9))

        // Large bound n = 3·2⁶¹, where a plain `next() % n` is badly biased: 2⁶⁴ mod n = 2⁶², so the
        // values below 2⁶² get three preimages, the rest two, and P(x < n/3) would be 0.375, not 1/3.
        // With 100,000 draws the SE of the fraction is √(2/9/10⁵) = 1.5e-3: the bias is 28 SE.
        let bound = 3 << 61
        var below = 0
        for _ in 0..<100_000 {
            let x = g.nextInt(below: bound)
            XCTAssert(x >= 0 && x < bound)
            if x < bound / 3 { below += 1 }
        }
        XCTAssertEqual(Double(below) / 100_000, 1.0 / 3, accuracy: 5 * (2.0 / 9 / 100_000).squareRoot())
    }

    func testPermutationsAreUniform() {
        // All 6 orders of 3 items, 60,000 draws: χ² with 5 degrees of freedom, p = 10⁻⁶ bound (≈ 35).
        var g = RandomGenerator(seed: 6)
        var counts: [[Int]: Int] = [:]
        for _ in 0..<60_000 { counts[g.permutation(3), default: 0] += 1 }
        XCTAssertEqual(counts.count, 6)
        XCTAssertLessThan(chiSquare(Array(counts.values), expected: 10_000), chiSquareBound(degreesOfFreedom: 5))

        let p = g.permutation(1000)
        XCTAssertEqual(p.sorted(), Array(0..<1000))
        var a = RandomGenerator(seed: 9), b = RandomGenerator(seed: 9)
        var items = Array("abcdefghij")
        a.shuffle(&items)
        XCTAssertEqual(items, b.permutation(10).map { Array("abcdefghij")[$0] })
    }

    func testParallelFillEqualsSerialFill() {
        // Start at an odd position and fill a count that is neither a multiple of 4 nor of 2, so that
        // chunks start mid-block; compare with 1 thread, 2, 3 and 5 (concurrentPerform accepts more
        // iterations than cores) and with a run of scalar draws.
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        let n = 100_003
        func fill(threads: Int) -> (uniform: [Float], normal: [Float]) {
            Parallel.threadCount = threads
            var g = RandomGenerator(seed: 11).stream(3)
            _ = g.nextFloat()
            let u = Tensor(uninitializedShape: [n]), z = Tensor(uninitializedShape: [n])
            g.fill(uniform: u, range: -2..<3)
            g.fill(normal: z, mean: 1, std: 2)
            return (u.array, z.array)
        }
        let serial = fill(threads: 1)
        for threads in [2, 3, 5] {
            let parallel = fill(threads: threads)
            assertBitwiseEqual(parallel.uniform, serial.uniform, "uniform fill, \(threads) threads")
            assertBitwiseEqual(parallel.normal, serial.normal, "normal fill, \(threads) threads")
        }

        Parallel.threadCount = 2
        var a = RandomGenerator(seed: 12), b = RandomGenerator(seed: 12)
        _ = a.next(); _ = b.next()
        let t = Tensor(uninitializedShape: [50_001])
        a.fill(uniform: t)
        assertBitwiseEqual(t.array, floats(&b, 50_001), "fill(uniform:) vs nextFloat()")
        XCTAssertEqual(a.state, b.state)
        let z = Tensor(uninitializedShape: [3])
        a.fill(normal: z)
        XCTAssertEqual(z.data[0].bitPattern, b.normal().bitPattern, "fill(normal:)[0] vs normal()")
    }

    func testStreamsAreDistinctAndStable() {
        let root = RandomGenerator(seed: 21)
        var generators = [root, root.stream(0), root.stream(1), root.stream(1).stream(0),
                          root.split(key: "data"), root.split(key: "dropout"),
                          RandomGenerator(seed: 22).stream(1)]
        let sequences = (0..<generators.count).map { i in (0..<256).map { _ in generators[i].next() } }
        for i in 0..<sequences.count {
            for j in (i + 1)..<sequences.count {
                XCTAssertEqual(zip(sequences[i], sequences[j]).filter { $0 == $1 }.count, 0,
                               "streams \(i) and \(j) share values")
            }
        }
        // A child depends on (seed, parent stream, index), not on how much the parent has drawn.
        var advanced = root
        _ = (0..<17).map { _ in advanced.next() }
        XCTAssertEqual(advanced.stream(1).state, root.stream(1).state)
        XCTAssertEqual(advanced.split(key: "data").state, root.split(key: "data").state)

        // Independence, in the weakest useful sense: Pearson correlation of 2¹⁶ uniforms from
        // streams 0 and 1 has SE 1/√n = 3.9e-3 under independence; bound 5 SE.
        var s0 = root.stream(0), s1 = root.stream(1)
        let n = 1 << 16
        let x = floats(&s0, n).map { Double($0) - 0.5 }, y = floats(&s1, n).map { Double($0) - 0.5 }
        let r = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 }
            / (x.reduce(0) { $0 + $1 * $1 } * y.reduce(0) { $0 + $1 * $1 }).squareRoot()
        XCTAssertEqual(r, 0, accuracy: 5 / Double(n).squareRoot())
    }

    func testTensorFactories() {
        var g = RandomGenerator(seed: 31)
        let u = Tensor.randomUniform([64, 33], range: -0.25..<0.25, generator: &g, requiresGrad: true)
        XCTAssertEqual(u.shape, [64, 33])
        XCTAssertTrue(u.requiresGrad)
        XCTAssertTrue(u.array.allSatisfy { $0 >= -0.25 && $0 <= 0.25 })
        let z = Tensor.randomNormal([5, 7], std: 0.02, generator: &g)
        XCTAssertEqual(z.shape, [5, 7])
        XCTAssertFalse(z.requiresGrad)
        XCTAssertTrue(z.array.allSatisfy { abs($0) <= 0.02 * 5.8 })  // Box–Muller here is bounded by 5.77σ
        XCTAssertEqual(g.position, UInt64(64 * 33 + 36))  // uniform: one word each; normal: 35 rounded to 36
    }

    // MARK: Module

    final class Attention: Module {
        let wq = Tensor(zeros: [4, 4], requiresGrad: true)
        let wk = Tensor(zeros: [4, 4], requiresGrad: true)
        let ropeTable = Tensor(zeros: [8, 2])  // a buffer: no gradient, not a parameter
    }

    final class MLP: Module {
        let w1 = Tensor(zeros: [4, 8], requiresGrad: true)
        let w2 = Tensor(zeros: [8, 4], requiresGrad: true)
    }

    final class Block: Module {
        let norm = Tensor(repeating: 1, shape: [4], requiresGrad: true)
        let attn = Attention()
        var mlp: MLP?
        weak var owner: Model?  // a back-reference: must not be walked again
        init(withMLP: Bool) { mlp = withMLP ? MLP() : nil }
    }

    struct NormWeights {
        let gain = Tensor(repeating: 1, shape: [4], requiresGrad: true)
        let epsilon: Float = 1e-5
    }

    class Base: Module {
        let embedding = Tensor(zeros: [10, 4], requiresGrad: true)
    }

    final class Model: Base {
        let blocks = [Block(withMLP: true), Block(withMLP: false)]
        let finalNorm = NormWeights()
        let extra = [Tensor(zeros: [2], requiresGrad: true), Tensor(zeros: [3], requiresGrad: true)]
        let table: [Float] = [1, 2, 3]
        let name = "tiny"
        var head: Tensor  // tied to the embedding: listed once, under its first name
        override init() {
            head = Tensor(zeros: [1])
            super.init()
            head = embedding
            for block in blocks { block.owner = self }
        }
    }

    func testNamedParametersFollowsPyTorchNaming() {
        let model = Model()
        let named = model.namedParameters()
        XCTAssertEqual(named.map(\.name), [
            "embedding",
            "blocks.0.norm", "blocks.0.attn.wq", "blocks.0.attn.wk", "blocks.0.mlp.w1", "blocks.0.mlp.w2",
            "blocks.1.norm", "blocks.1.attn.wq", "blocks.1.attn.wk",
            "finalNorm.gain", "extra.0", "extra.1",
        ])
        XCTAssert(named[2].tensor === model.blocks[0].attn.wq)
        XCTAssertEqual(model.blocks[1].attn.wk.name, "blocks.1.attn.wk")
        XCTAssertEqual(model.head.name, "embedding")
        XCTAssertNil(model.blocks[0].attn.ropeTable.name)
        XCTAssertEqual(model.parameterCount, 40 + 2 * (4 + 32) + 64 + 4 + 5)
        XCTAssertEqual(Set(model.parametersByName().keys), Set(named.map(\.name)))
        XCTAssert(model.parametersByName()["blocks.0.mlp.w2"] === model.blocks[0].mlp!.w2)

        for (_, t) in named { t.grad = Tensor(repeating: 1, shape: t.shape) }
        model.zeroGrad()
        XCTAssertTrue(model.parameters.allSatisfy { $0.grad == nil })
    }

    // MARK: AdamW

    /// The textbook update (Loshchilov & Hutter 2019, Algorithm 2, PyTorch parameterisation) in Double.
    struct ReferenceAdamW {
        var p: [Double], m: [Double], v: [Double], t = 0
        let beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double
        init(_ p: [Float], beta1: Double = 0.9, beta2: Double = 0.95, epsilon: Double = 1e-8, weightDecay: Double) {
            self.p = p.map(Double.init)
            m = Array(repeating: 0, count: p.count)
            v = m
            self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon; self.weightDecay = weightDecay
        }
        mutating func step(_ g: [Float], lr: Double) {
            t += 1
            for i in p.indices {
                let gi = Double(g[i])
                m[i] = beta1 * m[i] + (1 - beta1) * gi
                v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
                let mHat = m[i] / (1 - pow(beta1, Double(t))), vHat = v[i] / (1 - pow(beta2, Double(t)))
                p[i] -= lr * (mHat / (vHat.squareRoot() + epsilon) + weightDecay * p[i])
            }
        }
    }

    func testAdamWMatchesTextbookUpdate() {
        // Three tensors: a decayed matrix, an undecayed vector (rank 1) and a matrix large enough for
        // the two-thread path. Gradients change every step and span 1e-9…10, so ε matters for some
        // elements; the learning rate follows a schedule, as in training.
        var g = RandomGenerator(seed: 41)
        let shapes = [("w", [3, 4]), ("gain", [5]), ("big.w", [200, 210])]
        let params = shapes.map { name, shape in
            (name: name, tensor: Tensor.randomNormal(shape, std: 1, generator: &g, requiresGrad: true))
        }
        let optimizer = AdamW(parameters: params, learningRate: 0)
        XCTAssertEqual(optimizer.decayedNames, ["w", "big.w"])
        var references = params.map { _, t in ReferenceAdamW(t.array, weightDecay: t.rank >= 2 ? 0.1 : 0) }
        let schedule = WarmupCosineSchedule(peak: 1e-2, warmupSteps: 2, totalSteps: 6, floor: 1e-3)
        let steps = 6
        for step in 0..<steps {
            optimizer.learningRate = schedule.rate(at: step)
            for (k, (_, t)) in params.enumerated() {
                let grad = Tensor.randomNormal(t.shape, std: 1, generator: &g)
                for i in 0..<grad.count { grad.data[i] *= pow(10, Float(i % 11) - 9) }  // 1e-9 … 10
                t.grad = grad
                references[k].step(grad.array, lr: Double(optimizer.learningRate))
            }
            optimizer.step()
        }
        XCTAssertEqual(optimizer.stepCount, steps)
        // Tolerance: each step rounds θ at most ~4 times (decay product, quotient, product, difference:
        // ≤ 4 ulp of max(|θ|, 1) with ulp(1) = 2⁻²³), and the Adam direction m̂/(√v̂+ε) — of size ≲ 3 — is
        // off by ≲ (10 + 2t) ulp relative (the m, v recurrences add ~2 roundings per step), which lr ≤ 10⁻²
        // shrinks below 1 ulp of θ. So ≤ 8·2⁻²³·(|θ|+1) per step, over `steps` steps.
        for (k, (name, t)) in params.enumerated() {
            assertClose(t.array, references[k].p, tolerance: { Double(steps) * 8 * 0x1p-23 * (abs($0) + 1) },
                        "AdamW '\(name)' after \(steps) steps")
        }
    }

    func testWeightDecayIsDecoupled() {
        // With a zero gradient, m = v = 0 and the Adam term vanishes: a decayed parameter shrinks by
        // exactly (1 − lr·λ), whatever its magnitude. Under Adam + L2, λθ would pass through √v̂ and
        // every coordinate would move by ≈ lr regardless of θ — 2.0 and 0.001 would shrink by the same amount.
        let w = Tensor([2, -0.5, 1e-3, 0], shape: [2, 2], requiresGrad: true)
        let b = Tensor([2, -0.5], shape: [2], requiresGrad: true)
        let optimizer = AdamW(parameters: [("w", w), ("b", b)], learningRate: 0.1, weightDecay: 0.1)
        w.grad = Tensor(zeros: w.shape)
        b.grad = Tensor(zeros: b.shape)
        optimizer.step()
        let factor: Float = 1 - 0.1 * 0.1
        XCTAssertEqual(w.array, [2 * factor, -0.5 * factor, 1e-3 * factor, 0])
        XCTAssertEqual(b.array, [2, -0.5], "rank-1 tensors are not decayed by default")

        // With a gradient, the decay is the same absolute term whatever the gradient's scale: the
        // difference between λ = 0.1 and λ = 0 is lr·λ·θ for gradients of size 1 and of size 1000.
        for gradScale: Float in [1, 1000] {
            let p1 = Tensor([1.5, -3], shape: [1, 2], requiresGrad: true)
            let p2 = Tensor([1.5, -3], shape: [1, 2], requiresGrad: true)
            let decayed = AdamW(parameters: [("p", p1)], learningRate: 0.01, weightDecay: 0.1)
            let plain = AdamW(parameters: [("p", p2)], learningRate: 0.01, weightDecay: 0)
            p1.grad = Tensor([0.3 * gradScale, -0.7 * gradScale], shape: [1, 2])
            p2.grad = p1.grad!.copy()
            decayed.step(); plain.step()
            // Difference = −lr·λ·θ₀ = −0.001·θ₀; both sides are Float results near 1.5 and 3 (ulp ≈ 2.4e-7),
            // so allow 4 ulp of 3.
            XCTAssertEqual(p1[0, 0] - p2[0, 0], -0.001 * 1.5, accuracy: 1e-6)
            XCTAssertEqual(p1[0, 1] - p2[0, 1], 0.001 * 3, accuracy: 1e-6)
        }
    }

    func testParametersWithoutGradientAreUntouched() {
        let a = Tensor([1, 2, 3, 4], shape: [2, 2], requiresGrad: true)
        let frozen = Tensor([5, 6, 7, 8], shape: [2, 2], requiresGrad: true)
        let optimizer = AdamW(parameters: [("a", a), ("frozen", frozen)], learningRate: 0.1)
        a.grad = Tensor([1, 1, 1, 1], shape: [2, 2])
        for _ in 0..<3 { optimizer.step() }
        XCTAssertEqual(frozen.array, [5, 6, 7, 8])
        XCTAssertEqual(optimizer.state["m.frozen"]!.array, [0, 0, 0, 0])
        XCTAssertEqual(optimizer.state["v.frozen"]!.array, [0, 0, 0, 0])
        XCTAssertNotEqual(a.array, [1, 2, 3, 4])
    }

    func testAFrozenParameterStartsItsBiasCorrectionWhenItThaws() throws {
        // Frozen for 3 steps (a training stage that leaves it alone), then trained: its first update is
        // exactly a fresh optimiser's first update, while the other parameter goes on at t = 4.
        let a = Tensor([1, 2], shape: [2], requiresGrad: true), late = Tensor([3, 4], shape: [2], requiresGrad: true)
        let optimizer = AdamW(parameters: [("a", a), ("late", late)], learningRate: 0.1)
        for _ in 0..<3 {
            a.grad = Tensor([0.5, -1], shape: [2]); late.grad = Tensor([9, 9], shape: [2])
            optimizer.step(freezing: ["late"])
        }
        XCTAssertEqual(late.array, [3, 4])
        XCTAssertEqual(optimizer.state["m.late"]!.array, [0, 0])
        XCTAssertEqual(optimizer.state["steps"]!.array, [3, 0])
        let saved = optimizer.state.mapValues { $0.copy() }
        a.grad = Tensor([0.5, -1], shape: [2]); late.grad = Tensor([2, -3], shape: [2])
        optimizer.step()
        let fresh = Tensor([3, 4], shape: [2], requiresGrad: true)
        let reference = AdamW(parameters: [("late", fresh)], learningRate: 0.1)
        fresh.grad = Tensor([2, -3], shape: [2])
        reference.step()
        assertBitwiseEqual(late.array, fresh.array, "the thawed parameter's first update")
        XCTAssertEqual(optimizer.state["steps"]!.array, [4, 1])
        // The counts survive a checkpoint; a state without them (every parameter trained every step) loads too.
        let restored = AdamW(parameters: [("a", Tensor([1, 2], shape: [2], requiresGrad: true)), ("late", Tensor([3, 4], shape: [2], requiresGrad: true))],
                             learningRate: 0.1)
        try restored.load(state: saved, stepCount: 3)
        XCTAssertEqual(restored.state["steps"]!.array, [3, 0])
        var older = saved
        older["steps"] = nil
        try restored.load(state: older, stepCount: 3)
        XCTAssertNil(restored.state["steps"], "every count is the step count: nothing extra to save")
        older["steps"] = Tensor([5, 0], shape: [2])
        XCTAssertThrowsError(try restored.load(state: older, stepCount: 3)) { XCTAssert("\($0)".contains("outside 0...3"), "\($0)") }
    }

    func testAdamWStateRoundTripContinuesIdentically() throws {
        var g = RandomGenerator(seed: 51)
        func makeParams() -> [(name: String, tensor: Tensor)] {
            var init_ = RandomGenerator(seed: 52)
            return [("blocks.0.w", Tensor.randomNormal([30, 40], std: 1, generator: &init_, requiresGrad: true)),
                    ("norm", Tensor.randomNormal([40], std: 1, generator: &init_, requiresGrad: true))]
        }
        let grads = (0..<6).map { _ in
            [Tensor.randomNormal([30, 40], std: 1, generator: &g), Tensor.randomNormal([40], std: 1, generator: &g)]
        }
        func run(_ optimizer: AdamW, _ params: [(name: String, tensor: Tensor)], steps: Range<Int>) {
            for s in steps {
                for (k, p) in params.enumerated() { p.tensor.grad = grads[s][k].copy() }
                optimizer.learningRate = 0.01 / Float(s + 1)
                optimizer.step()
            }
        }
        let paramsA = makeParams()
        let a = AdamW(parameters: paramsA, learningRate: 0.01)
        run(a, paramsA, steps: 0..<3)
        // A checkpoint: copies of the parameters, the moments and the step count.
        let savedParams = paramsA.map { $0.tensor.copy() }
        let savedState = a.state.mapValues { $0.copy() }
        let savedSteps = a.stepCount
        run(a, paramsA, steps: 3..<6)

        let paramsB = makeParams()
        for (p, saved) in zip(paramsB, savedParams) { p.tensor.data.update(from: saved.data, count: saved.count) }
        let b = AdamW(parameters: paramsB, learningRate: 0.01)
        try b.load(state: savedState, stepCount: savedSteps)
        run(b, paramsB, steps: 3..<6)
        for (pa, pb) in zip(paramsA, paramsB) {
            assertBitwiseEqual(pb.tensor.array, pa.tensor.array, "resumed '\(pa.name)'")
        }
        XCTAssertEqual(b.stepCount, 6)

        // Strict loading: every problem is named, and a failed load changes nothing.
        var broken = savedState
        broken["m.norm"] = nil
        broken["v.blocks.0.w"] = Tensor(zeros: [40, 30])
        broken["m.head"] = Tensor(zeros: [1])
        let before = b.state["v.norm"]!.array
        XCTAssertThrowsError(try b.load(state: broken, stepCount: 3)) { error in
            let message = String(describing: error)
            XCTAssert(message.contains("missing 'm.norm'"), message)
            XCTAssert(message.contains("'v.blocks.0.w' has shape [40, 30]"), message)
            XCTAssert(message.contains("unexpected 'm.head'"), message)
        }
        XCTAssertEqual(b.stepCount, 6)
        XCTAssertEqual(b.state["v.norm"]!.array, before)
    }

    // MARK: Learning-rate schedule

    func testWarmupCosineSchedule() {
        let s = WarmupCosineSchedule(peak: 1e-3, warmupSteps: 100, totalSteps: 1100, floor: 1e-4)
        // Rates are computed in Double and rounded once to Float: compare within 1 ulp of 1e-3 (1.2e-10).
        let ulp: Float = 1.2e-10
        XCTAssertEqual(s.rate(at: 0), 1e-3 / 101, accuracy: ulp)
        XCTAssertEqual(s.rate(at: 49), 1e-3 * 50 / 101, accuracy: ulp)
        XCTAssertEqual(s.rate(at: 99), 1e-3 * 100 / 101, accuracy: ulp)
        XCTAssertEqual(s.rate(at: 100), 1e-3, accuracy: ulp)               // peak where warm-up ends
        XCTAssertEqual(s.rate(at: 600), (1e-3 + 1e-4) / 2, accuracy: ulp)  // cosine midpoint: halfway
        XCTAssertEqual(s.rate(at: 350), 1e-4 + 0.9e-3 * Float(0.5 * (1 + cos(Double.pi / 4))), accuracy: ulp)
        XCTAssertEqual(s.rate(at: 1100), 1e-4)
        XCTAssertEqual(s.rate(at: 5000), 1e-4)
        let rates = (0...1100).map { s.rate(at: $0) }
        XCTAssertTrue(zip(rates[0...100], rates[1...100]).allSatisfy { $0 < $1 }, "warm-up rises")
        XCTAssertTrue(zip(rates[100...], rates[101...]).allSatisfy { $0 >= $1 }, "decay falls")

        let noWarmup = WarmupCosineSchedule(peak: 2, warmupSteps: 0, totalSteps: 10, floor: 0)
        XCTAssertEqual(noWarmup.rate(at: 0), 2)
        XCTAssertEqual(noWarmup.rate(at: 5), 1, accuracy: 1e-7)
        XCTAssertEqual(noWarmup.rate(at: 10), 0)
        let constantAfterWarmup = WarmupCosineSchedule(peak: 1, warmupSteps: 4, totalSteps: 4, floor: 0.5)
        XCTAssertEqual(constantAfterWarmup.rate(at: 3), 0.8, accuracy: 1e-7)
        XCTAssertEqual(constantAfterWarmup.rate(at: 4), 0.5)
    }

    // MARK: Gradient clipping

    func testClipGradientNormKnownValues() {
        func params() -> [Tensor] {
            let a = Tensor([0, 0], shape: [2], requiresGrad: true), b = Tensor([0], shape: [1], requiresGrad: true)
            let noGrad = Tensor([0], shape: [1], requiresGrad: true)
            a.grad = Tensor([3, 4], shape: [2])
            b.grad = Tensor([12], shape: [1])
            return [a, b, noGrad]  // global norm √(9 + 16 + 144) = 13
        }
        let loose = params()
        XCTAssertEqual(clipGradientNorm(loose, maxNorm: 26), 13)
        XCTAssertEqual(loose[0].grad!.array, [3, 4], "below maxNorm: unchanged")
        XCTAssertEqual(loose[1].grad!.array, [12])

        let tight = params()
        XCTAssertEqual(clipGradientNorm(tight, maxNorm: 6.5), 13)
        XCTAssertEqual(tight[0].grad!.array, [1.5, 2])
        XCTAssertEqual(tight[1].grad!.array, [6])
        XCTAssertEqual(clipGradientNorm(tight, maxNorm: 100), 6.5, "the norm after clipping is maxNorm")
        XCTAssertNil(tight[2].grad)
    }

    func testClipGradientNormAccumulatesInDoubleAndIsThreadIndependent() {
        // 10⁶ elements of 0.1 (as Float): the norm is √(10⁶)·Float(0.1) to Double precision. Summing the
        // squares in Float would be off by ~10⁻⁴ relative; the Double sum must be within 1 ulp of Float.
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        let n = 1_000_000
        let t = Tensor(zeros: [n], requiresGrad: true)
        let expected = Double(n).squareRoot() * Double(Float(0.1))
        var norms: [Float] = []
        for threads in [1, 2, 3] {
            Parallel.threadCount = threads
            t.grad = Tensor(repeating: 0.1, shape: [n])
            norms.append(clipGradientNorm([t], maxNorm: 1e9))
        }
        XCTAssertEqual(Double(norms[0]), expected, accuracy: expected * 0x1p-23)
        XCTAssertEqual(norms.map(\.bitPattern), [UInt32](repeating: norms[0].bitPattern, count: 3))
    }

    func testClipGradientNormReportsNonFinite() {
        let a = Tensor([0, 0], shape: [2], requiresGrad: true), b = Tensor([0], shape: [1], requiresGrad: true)
        a.grad = Tensor([1, .nan], shape: [2])
        b.grad = Tensor([2], shape: [1])
        XCTAssertTrue(clipGradientNorm([a, b], maxNorm: 1).isNaN)
        XCTAssertEqual(b.grad!.array, [2], "gradients are left untouched")
        XCTAssertEqual(nonFiniteGradientNames([("a", a), ("b", b)]), ["a"])

        b.grad = Tensor([.infinity], shape: [1])
        a.grad = Tensor([1, 1], shape: [2])
        XCTAssertEqual(clipGradientNorm([a, b], maxNorm: 1), .infinity)
        let error = NonFiniteGradientError(step: 1234, norm: .infinity, parameters: nonFiniteGradientNames([("a", a), ("b", b)]))
        XCTAssert(error.description.contains("step 1234") && error.description.contains("in b"), error.description)

        // Overflow of the Float squares is not an issue: 1e30² overflows Float but not Double.
        b.grad = Tensor([1e30], shape: [1])
        XCTAssertEqual(clipGradientNorm([b], maxNorm: 1), 1e30)
        XCTAssertEqual(b.grad!.array[0], 1, accuracy: 1e-6)
    }
}

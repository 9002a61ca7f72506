// Drawing ids from logits on hand-made examples: greedy, restriction to an allowed set, temperature,
// top-k, top-p, the repetition penalty, classifier-free guidance, reproducibility.
import XCTest
@testable import Fusion

final class TokenSamplingTests: XCTestCase {
    /// Logits whose softmax is exactly `probabilities`.
    func logits(_ probabilities: [Float]) -> [Float] { probabilities.map { log($0) } }

    func distribution(_ logits: [Float], _ options: TokenSamplingOptions, allowed: [Int32]? = nil,
                      history: [Int32] = []) -> [Float] {
        var sampler = TokenSampler(options: options, allowed: allowed ?? (0..<Int32(logits.count)).map { $0 }, vocabularySize: logits.count)
        return sampler.distribution(logits: logits, history: history[...])
    }

    func assertClose(_ a: [Float], _ b: [Float], accuracy: Float = 1e-6, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        XCTAssert(zip(a, b).allSatisfy { abs($0 - $1) <= accuracy }, "\(a) vs \(b)", file: file, line: line)
    }

    func testGreedyAndTopKOneAgreeOnTheMostLikelyID() {
        let x: [Float] = [0.3, -1, 2.5, 2.4, 0]
        var generator = RandomGenerator(seed: 1)
        var greedy = TokenSampler(options: .greedy, allowed: 0..<5, vocabularySize: 5)
        var topOne = TokenSampler(options: TokenSamplingOptions(temperature: 1.5, topK: 1), allowed: 0..<5, vocabularySize: 5)
        for _ in 0..<50 {
            XCTAssertEqual(greedy.sample(logits: x, generator: &generator).id, 2)
            XCTAssertEqual(topOne.sample(logits: x, generator: &generator).id, 2)
        }
    }

    func testOnlyAllowedIDsAreDrawn() {
        let x: [Float] = [5, 0, 1, 4, 0.5, 3]  // the two most likely ids (0, 3) are not allowed
        let allowed: [Int32] = [1, 2, 4, 5]
        var greedy = TokenSampler(options: .greedy, allowed: allowed, vocabularySize: 6)
        var generator = RandomGenerator(seed: 2)
        XCTAssertEqual(greedy.sample(logits: x, generator: &generator).id, 5)
        var hot = TokenSampler(options: TokenSamplingOptions(temperature: 3), allowed: allowed, vocabularySize: 6)
        var seen = Set<Int32>()
        for _ in 0..<400 { seen.insert(hot.sample(logits: x, generator: &generator).id) }
        XCTAssertEqual(seen, Set(allowed))
        // The distribution is the softmax over the allowed ids alone.
        let expected = [Float(0), 1, 0.5, 3].map { exp($0) }, total = expected.reduce(0, +)
        assertClose(distribution(x, TokenSamplingOptions(), allowed: allowed), expected.map { $0 / total }, accuracy: 1e-6)
    }

    func testTopPKeepsTheSmallestPrefixWithEnoughMass() {
        let x = logits([0.05, 0.5, 0.15, 0.3])  // sorted: 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05)
        assertClose(distribution(x, TokenSamplingOptions(topP: 0.4)), [0, 1, 0, 0])
        assertClose(distribution(x, TokenSamplingOptions(topP: 0.75)), [0, 0.5 / 0.8, 0, 0.3 / 0.8])
        assertClose(distribution(x, TokenSamplingOptions(topP: 0.85)), [0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95])
        assertClose(distribution(x, TokenSamplingOptions(topP: 1)), [0.05, 0.5, 0.15, 0.3])
        // top-k and top-p together: the stricter wins.
        assertClose(distribution(x, TokenSamplingOptions(topK: 1, topP: 0.85)), [0, 1, 0, 0])
        assertClose(distribution(x, TokenSamplingOptions(topK: 3, topP: 0.75)), [0, 0.5 / 0.8, 0, 0.3 / 0.8])
    }

    func testTopKAndTemperature() {
        let x = logits([0.1, 0.2, 0.3, 0.4])
        assertClose(distribution(x, TokenSamplingOptions(topK: 2)), [0, 0, 3.0 / 7, 4.0 / 7])
        // Temperature 2 takes square roots of the probabilities before renormalising.
        let roots = [0.1, 0.2, 0.3, 0.4].map { Float($0).squareRoot() }, total = roots.reduce(0, +)
        assertClose(distribution(x, TokenSamplingOptions(temperature: 2)), roots.map { $0 / total })
        assertClose(distribution(x, .greedy), [0, 0, 0, 1])
    }

    func testRepetitionPenaltyLowersARepeatedID() {
        let x: [Float] = [2, 1, -1]
        let plain = distribution(x, TokenSamplingOptions())
        let penalised = distribution(x, TokenSamplingOptions(repetitionPenalty: 2), history: [0, 2, 0])
        XCTAssertLessThan(penalised[0], plain[0])
        XCTAssertLessThan(penalised[2], plain[2], "a negative logit is multiplied, so it drops too")
        XCTAssertGreaterThan(penalised[1], plain[1])
        // CTRL's rule: 2 / 2 = 1 and −1 · 2 = −2, once per id however often it was seen.
        let expected = [Float(1), 1, -2].map { exp($0) }, total = expected.reduce(0, +)
        assertClose(penalised, expected.map { $0 / total })
        // Greedy follows the penalty too.
        var sampler = TokenSampler(options: TokenSamplingOptions(temperature: 0, repetitionPenalty: 4), allowed: 0..<3, vocabularySize: 3)
        var generator = RandomGenerator(seed: 0)
        XCTAssertEqual(sampler.sample(logits: x, history: [0], generator: &generator).id, 1)
    }

    /// Draws follow the distribution (inverse CDF over a uniform): frequencies of 20,000 draws are
    /// within 4 standard errors (σ ≤ √(0.25/20000) ≈ 0.0035) of the probabilities.
    func testDrawFrequenciesFollowTheDistribution() {
        let probabilities: [Float] = [0.5, 0.3, 0.15, 0.05]
        var sampler = TokenSampler(options: TokenSamplingOptions(), allowed: 0..<4, vocabularySize: 4)
        var generator = RandomGenerator(seed: 3)
        var counts = [Int](repeating: 0, count: 4)
        let x = logits(probabilities)
        for _ in 0..<20_000 { counts[Int(sampler.sample(logits: x, generator: &generator).id)] += 1 }
        for (count, p) in zip(counts, probabilities) { XCTAssertEqual(Float(count) / 20_000, p, accuracy: 0.014) }
    }

    /// The returned log-probability is that of the untempered, unfiltered softmax over the allowed ids
    /// (what MaskGIT ranks by), whatever the temperature.
    func testLogProbabilityIsOfTheUntemperedDistribution() {
        let x = logits([0.2, 0.3, 0.5])
        var sampler = TokenSampler(options: TokenSamplingOptions(temperature: 0.3, topK: 2), allowed: 0..<3, vocabularySize: 3)
        var generator = RandomGenerator(seed: 4)
        for _ in 0..<20 {
            let draw = sampler.sample(logits: x, generator: &generator)
            XCTAssertNotEqual(draw.id, 0, "top-k 2 drops id 0")
            XCTAssertEqual(draw.logProbability, x[Int(draw.id)], accuracy: 1e-6)
        }
    }

    func testSameSeedSameDraws() {
        let x: [Float] = [0.1, 0.4, -0.3, 0.2, 0]
        func draws(_ seed: UInt64) -> [Int32] {
            var sampler = TokenSampler(options: TokenSamplingOptions(temperature: 1.2, topP: 0.9), allowed: 0..<5, vocabularySize: 5)
            var generator = RandomGenerator(seed: seed)
            return (0..<30).map { _ in sampler.sample(logits: x, generator: &generator).id }
        }
        XCTAssertEqual(draws(7), draws(7))
        XCTAssertNotEqual(draws(7), draws(8))
    }

    func testInvalidOptionsAreRefusedWithTheirName() throws {
        XCTAssertNoThrow(try TokenSamplingOptions(temperature: 0, topK: 1, topP: 1, repetitionPenalty: 1.2).validate())
        for (options, name) in [(TokenSamplingOptions(temperature: -1), "temperature"), (TokenSamplingOptions(topK: 0), "topK"),
                                (TokenSamplingOptions(topP: 0), "topP"), (TokenSamplingOptions(repetitionPenalty: 0), "repetitionPenalty")] {
            XCTAssertThrowsError(try options.validate()) { XCTAssert("\($0)".contains(name), "\($0)") }
        }
        var generator = RandomGenerator(seed: 0)
        let model = try FusionModel(config: tinyRecipe(.chameleon), vocabulary: testVocabulary(imageCodes: 6), generator: &generator)
        XCTAssertThrowsError(try model.caption(images: [.codes([0, 1, 2, 3])], maxTokens: 2, options: TokenSamplingOptions(topK: 0),
                                               generator: &generator))
    }

    func testClassifierFreeGuidanceFormula() {
        // (1 + s)·c − s·u
        XCTAssertEqual(guidedLogit(conditional: 2, unconditional: 1, scale: 3), 5)
        XCTAssertEqual(guidedLogit(conditional: 2, unconditional: 7, scale: 0), 2)
        XCTAssertEqual(guidedLogit(conditional: -1, unconditional: 1, scale: 0.5), -2)
        let c = Tensor([1, 2, 3, 4], shape: [2, 2]), u = Tensor([0, 2, 5, -1], shape: [2, 2])
        XCTAssertEqual(guidedLogits(conditional: c, unconditional: u, scale: 2).array, [3, 2, -1, 14])
    }
}

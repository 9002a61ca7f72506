// Show-o (arXiv 2408.12528): which input ids become MASK and which positions are trained to what on a
// small packed example, bidirectional attention inside images, a whole-model gradient check under
// its loss, the MaskGIT sampler, and the two-class fixture (see ChameleonTests.swift) end to end.
import XCTest
@testable import Fusion

final class ShowoTests: XCTestCase {
    let vocabulary = testVocabulary(imageCodes: 6)

    func model(seed: UInt64 = 1, imageGrid: Int = 2) throws -> FusionModel {
        var generator = RandomGenerator(seed: seed)
        return try FusionModel(config: tinyRecipe(.showo, imageGrid: imageGrid), vocabulary: vocabulary, generator: &generator)
    }

    /// A generation and an understanding document in one row of 24 (task tokens T2I = 18, MMU = 19):
    ///    0 BOS  1 T2I  2 "1"  3 "2"  4 BOI  5–8 codes 0 5 3 2  9 EOI  10 EOS
    ///   11 BOS 12 MMU 13 BOI 14–17 codes 1 1 4 0  18 EOI  19 "3"  20 EOS  21–23 PAD
    func packedExample(_ model: FusionModel) throws -> PackedBatch {
        let documents = [model.generationDocument(caption: [1, 2], image: .codes([0, 5, 3, 2])),
                         model.understandingDocument(image: .codes([1, 1, 4, 0]), caption: [3])]
        return try model.layout.pack(documents, length: 24)
    }

    func testMaskedInputsAndTrainedPositionsOnAPackedExample() throws {
        let model = try model()
        let batch = try packedExample(model)
        let (bos, eos, boi, eoi, pad, mask) = (vocabulary.bos, vocabulary.eos, vocabulary.boi, vocabulary.eoi, vocabulary.pad, vocabulary.mask)
        XCTAssertEqual(batch.ids, [bos, 18, 1, 2, boi, 20, 25, 23, 22, eoi, eos,
                                   bos, 19, boi, 21, 21, 24, 20, eoi, 3, eos, pad, pad, pad])
        for seed in 0..<8 as Range<UInt64> {
            var generator = RandomGenerator(seed: seed)
            var replay = generator
            let targets = model.maskedTokenTargets(batch, generator: &generator)
            // The generation image: u, then ⌈cos(π/2·u)·4⌉ (≥ 1) positions, all drawn from the generator in that order.
            let u = replay.nextFloat()
            let count = RecipeConfig.MaskSchedule.cosine.maskedCount(of: 4, at: u)
            let masked = Set(replay.permutation(4).prefix(count).map { 5 + $0 })
            XCTAssertEqual(count, max(1, Int((cos(Float.pi / 2 * u) * 4).rounded(.up))))
            var expectedInputs = batch.ids, expectedImageTargets = [Int32](repeating: -1, count: 24)
            for i in masked {
                expectedInputs[i] = mask
                expectedImageTargets[i] = batch.ids[i]  // its own code, at the same position (not shifted)
            }
            // The understanding image (after MMU) stays clean and untrained.
            XCTAssertEqual(targets.inputIDs, expectedInputs, "seed \(seed)")
            XCTAssertEqual(targets.imageTargets, expectedImageTargets, "seed \(seed)")
            // Text positions predict the next id unless it is an image position: T2I… c₂ → BOI, EOI → EOS,
            // MMU → BOI, EOI → "3" → EOS; BOI, the codes, both EOS and padding predict nothing.
            XCTAssertEqual(targets.textTargets, [18, 1, 2, boi, -1, -1, -1, -1, -1, eos, -1,
                                                 19, boi, -1, -1, -1, -1, -1, 3, eos, -1, -1, -1, -1])
        }
    }

    /// The loss is the mean over the trained positions (text targets and masked codes) of the
    /// cross-entropy of logits computed from the *masked* inputs; the parts are the means of each kind.
    func testLossIsTheMeanOverTrainedPositionsOfTheMaskedInput() throws {
        let model = try model()
        let batch = try packedExample(model)
        var generator = RandomGenerator(seed: 3), replay = generator
        let loss = model.loss(batch, generator: &generator)
        let targets = model.maskedTokenTargets(batch, generator: &replay)
        let logits = withoutGradients { model.tokenLogits(batch, inputIDs: targets.inputIDs) }.array
        let v = vocabulary.size
        func crossEntropies(_ targets: [Int32]) -> [Double] {
            targets.enumerated().filter { $0.element >= 0 }.map { i, target in
                let row = logits[(i * v)..<((i + 1) * v)].map(Double.init)
                return log(row.map(exp).reduce(0, +)) - row[Int(target)]
            }
        }
        let text = crossEntropies(targets.textTargets), image = crossEntropies(targets.imageTargets)
        XCTAssertEqual(text.count, 9)
        XCTAssertEqual(loss.trainedPositions, 9 + image.count)
        XCTAssertEqual(Double(loss.total.item), (text + image).reduce(0, +) / Double(text.count + image.count), accuracy: 1e-5)
        XCTAssertEqual(Double(loss.part("text_loss")!), text.reduce(0, +) / 9, accuracy: 1e-5)
        XCTAssertEqual(Double(loss.part("image_loss")!), image.reduce(0, +) / Double(image.count), accuracy: 1e-5)
        // MASK really is what the core reads: unmasked inputs give a different loss.
        let clean = crossEntropy(withoutGradients { model.tokenLogits(batch) }, targets: targets.imageTargets).item
        XCTAssertNotEqual(clean, loss.part("image_loss")!)
    }

    /// Inside an image every code sees every other code of that image; BOI, EOI and text stay causal
    /// (the picture of `SequencePackingTests.testBidirectionalImageAttention`).
    func testAttentionIsBidirectionalInsideImagesOnly() throws {
        let model = try model()
        let batch = try packedExample(model)
        let mask = model.masks(for: batch)[0]
        XCTAssertEqual(mask.picture, batch.masks(imageAttention: .bidirectional)[0].picture)
        for i in 5...8 { for j in 5...8 { XCTAssertTrue(mask.allows(query: i, key: j), "code \(i) → code \(j)") } }
        XCTAssertFalse(mask.allows(query: 4, key: 5), "BOI must not see the codes")
        XCTAssertFalse(mask.allows(query: 8, key: 9), "codes must not see EOI")
        XCTAssertTrue(mask.allows(query: 9, key: 8))
        XCTAssertFalse(mask.allows(query: 14, key: 5), "no attention across documents")
        for i in 14...17 { for j in 14...17 { XCTAssertTrue(mask.allows(query: i, key: j)) } }
    }

    func testWholeModelGradientUnderShowoLoss() throws {
        let model = try model(seed: 3)
        let batch = try packedExample(model)
        let fixed = RandomGenerator(seed: 9)
        var probe = fixed
        XCTAssertGreaterThan(model.maskedTokenTargets(batch, generator: &probe).imageCount, 0)
        assertGradientsMatch(model.parameters, epsilon: 3e-3, rtol: 3e-2, atol: 3e-3) { _ in
            var generator = fixed  // the same masks at every evaluation
            return model.loss(batch, generator: &generator).total
        }
    }

    /// The MaskGIT sampler writes h·w codes per caption, deterministically for a seed, only codes, for
    /// any number of steps (one step decodes everything at once).
    func testMaskedDecodingWritesOneFullImageOfCodes() throws {
        let model = try model(seed: 5, imageGrid: 3)
        for steps in [1, 4, 12] {
            var a = RandomGenerator(seed: 1), b = RandomGenerator(seed: 1)
            let first = try model.sampleImageCodes(captions: [[1, 2], [3], []], guidanceScale: 1, options: TokenSamplingOptions(temperature: 1),
                                                   steps: steps, generator: &a)
            let again = try model.sampleImageCodes(captions: [[1, 2], [3], []], guidanceScale: 1, options: TokenSamplingOptions(temperature: 1),
                                                   steps: steps, generator: &b)
            XCTAssertEqual(first, again)
            XCTAssertEqual(first.map(\.count), [9, 9, 9])
            XCTAssert(first.joined().allSatisfy { (0..<6).contains($0) }, "\(first)")
        }
        var generator = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try model.sampleImageCodes(captions: [[1]], guidanceScale: 0, options: .greedy, steps: 0, generator: &generator)) {
            XCTAssert("\($0)".contains("steps"), "\($0)")
        }
    }

    /// With one step and no noise, MaskGIT decoding is the argmax at every position of one forward pass
    /// over "caption BOI MASK…" with full attention inside the image (checks the prefix cache and the
    /// positions of the uncommitted image call).
    func testOneGreedyStepIsTheArgmaxOfAFullForwardPass() throws {
        let model = try model(seed: 6, imageGrid: 2)
        var generator = RandomGenerator(seed: 0)
        let sampled = try model.sampleImageCodes(captions: [[1, 2], [3]], guidanceScale: 0, options: .greedy, steps: 1,
                                                 confidenceTemperature: 0, generator: &generator)
        let d = model.config.model.width, v = vocabulary.size, mask = vocabulary.mask
        for (caption, codes) in zip([[1, 2], [3]] as [[Int32]], sampled) {
            let ids = [vocabulary.bos, vocabulary.t2i] + caption + [vocabulary.boi, mask, mask, mask, mask]
            let t = ids.count
            let spans = ids.indices.map { $0 >= t - 4 ? Int32(0) : -1 }
            let logits = withoutGradients {
                let hidden = model.core.hiddenStates(model.core.embed(ids).reshaped([1, t, d]), positions: (0..<t).map { Int32($0) },
                                                     masks: [AttentionMask(documentIDs: Array(repeating: 0, count: t), spanIDs: spans)])
                return model.core.logits(hidden.reshaped([t, d])).array
            }
            let expected = (t - 4..<t).map { i -> Int32 in
                let row = Array(logits[(i * v)..<((i + 1) * v)])
                return vocabulary.imageCodeRange.max { row[Int($0)] < row[Int($1)] }! - vocabulary.imageCodeOffset
            }
            XCTAssertEqual(codes, expected, "caption \(caption)")
        }
    }

    func testTwoClassFixtureTrainsAndConditionsGenerationAndCaptions() throws {
        try TwoClassFixture.trainAndCheckConditioning(.showo)
    }
}

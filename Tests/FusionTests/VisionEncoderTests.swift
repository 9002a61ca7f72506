// The `vit` understanding encoder: SigLIP's pairwise sigmoid loss against its formula and finite
// differences, the ViT and both contrastive towers under gradient checks, attention that reads the whole
// image, a frozen encoder that no optimiser sees and no gradient reaches (and a trainable one that
// trains), and the retrieval count on a case worked by hand.
import XCTest
@testable import Experiments
@testable import Fusion

final class VisionEncoderTests: XCTestCase {
    /// A ViT of width 8 over 8×8 grey images in 2×2 patches.
    func tinyEncoderConfig() -> VisionEncoderConfig {
        var c = VisionEncoderConfig()
        c.imageSide = 8; c.patchSize = 2; c.width = 8; c.layers = 1; c.heads = 2; c.embeddingWidth = 4; c.textLayers = 1
        return c
    }

    func testSigmoidPairLossIsTheFormulaAndItsGradient() {
        let n = 3
        let logits = testTensor([n, n], seed: 3, range: -12...12)
        let positive = [true, false, true, false, true, false, false, false, true]
        let loss = sigmoidPairLoss(logits, positive: positive)
        var expected = 0.0
        for k in 0..<(n * n) {
            let z: Double = positive[k] ? 1 : -1
            expected += Foundation.log(1 + Foundation.exp(-z * Double(logits.data[k])))  // −log σ(z·x)
        }
        XCTAssertEqual(Double(loss.item), expected / Double(n), accuracy: 1e-5 * expected)
        // Far-out logits neither overflow nor lose their small terms.
        let far = sigmoidPairLoss(Tensor([60, -60, 60, -60], shape: [2, 2]), positive: [true, true, false, false])
        XCTAssertEqual(Double(far.item), (60 + 60) / 2, accuracy: 1e-4)
        let report = gradientCheck([testTensor([n, n], seed: 4, range: -3...3)]) { sigmoidPairLoss($0[0], positive: positive) }
        XCTAssert(report.passed, "\(report.failures)")
    }

    func testTheViTsGradientAndItsAttentionOverTheWholeImage() {
        var generator = RandomGenerator(seed: 5)
        let vit = VisionTransformer(config: tinyEncoderConfig(), generator: &generator)
        let pixels = testTensor([2, 1, 8, 8], seed: 6, range: 0...1)
        XCTAssertEqual(vit(pixels).shape, [2, 16, 8])
        // Weights of std 0.3 rather than 0.02, so that a finite-difference step of 0.01 is a small one.
        for (name, weight) in vit.namedParameters() where name.hasPrefix("blocks.") && weight.rank == 2 {
            for i in 0..<weight.count { weight.data[i] *= 15 }
        }
        let report = gradientCheck([pixels] + vit.parameters) { _ in vit(pixels) }
        XCTAssert(report.passed, "\(report.failures)")
        // The first patch's feature depends on the last patch (bidirectional), and on nothing of the other image.
        let changed = Tensor(Array(UnsafeBufferPointer(start: pixels.data, count: pixels.count)), shape: pixels.shape)
        changed.data[63] += 0.5  // image 0, the bottom-right pixel: the last patch
        let (before, after) = withoutGradients { (vit(pixels), vit(changed)) }
        XCTAssertNotEqual(Array(UnsafeBufferPointer(start: before.data, count: 8)), Array(UnsafeBufferPointer(start: after.data, count: 8)))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: before.data + 128, count: 128)), Array(UnsafeBufferPointer(start: after.data + 128, count: 128)))
        // A half-resolution thumbnail is read at its own grid (NVLM-H).
        XCTAssertEqual(withoutGradients { vit(testTensor([1, 1, 4, 4], seed: 7, range: 0...1, requiresGrad: false)) }.shape, [1, 4, 8])
    }

    func testBothContrastiveTowersPassAGradientCheck() {
        var generator = RandomGenerator(seed: 8)
        let model = SigmoidContrastiveModel(config: tinyEncoderConfig(), words: 5, generator: &generator)
        let pixels = testTensor([3, 1, 8, 8], seed: 9, range: 0...1)
        let captions: [[Int32]] = [[1, 2], [3], [4, 1, 2]]  // lengths differ: padding must not count
        let positive = [true, false, false, false, true, false, false, false, true]
        XCTAssertEqual(model.textEmbeddings(captions).shape, [3, 4])
        let norms = withoutGradients { model.imageEmbeddings(pixels) }
        for row in 0..<3 { XCTAssertEqual((0..<4).reduce(Float(0)) { $0 + norms.data[row * 4 + $1] * norms.data[row * 4 + $1] }, 1, accuracy: 1e-5) }
        let report = gradientCheck([pixels] + model.parameters) { _ in model.loss(pixels, captions: captions, positive: positive) }
        XCTAssert(report.passed, "\(report.failures)")
        // A padded caption embeds as it does alone.
        let alone = withoutGradients { model.textEmbeddings([[3]]) }, padded = withoutGradients { model.textEmbeddings(captions) }
        for c in 0..<4 { XCTAssertEqual(alone.data[c], padded.data[4 + c], accuracy: 1e-6) }
    }

    func vitRecipe(trainEncoder: Bool) -> RecipeConfig {
        var config = tinyRecipe(.chameleon)
        config.understanding.encoder = .vit
        config.understanding.imageSide = 8
        config.understanding.trainEncoder = trainEncoder
        return config
    }

    func testAFrozenEncoderIsNoParameterAndPassesNoGradientWhileATrainableOneTrains() throws {
        let vocabulary = testVocabulary(imageCodes: 6)
        for trainable in [false, true] {
            var generator = RandomGenerator(seed: 10)
            let vit = VisionTransformer(config: tinyEncoderConfig(), generator: &generator)
            let model = try FusionModel(config: vitRecipe(trainEncoder: trainable), vocabulary: vocabulary, visionEncoder: vit, generator: &generator)
            XCTAssertEqual(model.config.understanding.patchSize, 2, "the ViT's patch size rules")
            let names = model.namedParameters().map(\.name)
            XCTAssertEqual(names.contains { $0.hasPrefix("understanding.encoder.") }, trainable)
            XCTAssert(names.contains { $0.hasPrefix("understanding.connector.") })
            let image = testTensor([1, 8, 8], seed: 11, range: 0...1, requiresGrad: false)
            let batch = try model.layout.pack([model.understandingDocument(image: .pixels(image), caption: [3, 4])], length: 24, rows: 1)
            var objective = RandomGenerator(seed: 12)
            model.zeroGrad()
            model.loss(batch, generator: &objective).total.backward()
            if trainable {
                XCTAssert(vit.patchWeight.grad.map { g in (0..<g.count).contains { g.data[$0] != 0 } } ?? false, "a trainable ViT gets a gradient")
            } else {
                XCTAssertNil(vit.patchWeight.grad, "a frozen ViT is outside the graph")
            }
        }
        // A vit model without the ViT, or with one trained on other images, is refused with what to do.
        var generator = RandomGenerator(seed: 13)
        XCTAssertThrowsError(try FusionModel(config: vitRecipe(trainEncoder: false), vocabulary: vocabulary, generator: &generator)) {
            XCTAssert("\($0)".contains("fusion encoder train"), "\($0)")
        }
        var other = tinyEncoderConfig()
        other.imageSide = 16
        let wide = VisionTransformer(config: other, generator: &generator)
        XCTAssertThrowsError(try FusionModel(config: vitRecipe(trainEncoder: false), vocabulary: vocabulary, visionEncoder: wide, generator: &generator)) {
            XCTAssert("\($0)".contains("16") && "\($0)".contains("--images"), "\($0)")
        }
    }

    func testRetrievalCountsHitsByCaptionText() {
        // Images 0 and 2 share the caption "a". Rows: images; columns: captions.
        let similarity: [Float] = [0.1, 0.0, 0.9,   // image 0 → caption 2 ("a"): a hit
                                   0.8, 0.2, 0.1,   // image 1 → caption 0 ("a", not "b"): a miss
                                   0.0, 0.1, 0.3]   // image 2 → caption 2: a hit
        let result = RetrievalMetrics.group(similarity: similarity, captions: ["a", "b", "a"])
        XCTAssertEqual(result.imageToText, 2)
        // Caption 0 → image 1 ("b"): a miss; caption 1 → image 1: a hit; caption 2 → image 0 ("a"): a hit.
        XCTAssertEqual(result.textToImage, 2)
        XCTAssertEqual(result.chance, 2.0 / 3 + 1.0 / 3 + 2.0 / 3, accuracy: 1e-12)
    }

    func testTheCommittedEncoderRetrievesOnTheTestSplit() throws {
        // results/encoders/vit on the first 1,000 test images: far above chance at retrieval, and zero-shot
        // classification by the ten class prompts well above the 0.1 of guessing (the README's full-split
        // figures: 0.63 / 0.68 at chance 0.016, zero-shot 0.68).
        let (model, words) = try SigmoidContrastiveModel.load(from: "results/encoders/vit/weights.h5")
        let test = try ImageSource.fashionMNIST(directory: FashionMNIST.directory).load(side: 32, channels: 1).test.prefix(1_000)
        let metrics = VisionEncoderTraining.evaluate(model, vocabulary: CaptionWords(words), on: test, classPrompts: true)
        XCTAssertEqual(metrics.count, 1_000)
        XCTAssertGreaterThan(metrics.imageToText, 20 * metrics.chance, metrics.summary)
        XCTAssertGreaterThan(metrics.textToImage, 20 * metrics.chance, metrics.summary)
        XCTAssertGreaterThan(metrics.zeroShot ?? 0, 0.5, metrics.summary)
    }

    func testSavedWeightsLoadAsTheyWereAndForeignFilesAreRefused() throws {
        let root = try temporaryDirectory()
        var generator = RandomGenerator(seed: 14)
        let model = SigmoidContrastiveModel(config: tinyEncoderConfig(), words: 3, generator: &generator)
        try model.save(to: root + "/weights.h5", words: ["<unknown>", "dark", "top"], overwrite: false)
        let (loaded, words) = try SigmoidContrastiveModel.load(from: root + "/weights.h5")
        XCTAssertEqual(words, ["<unknown>", "dark", "top"])
        let pixels = testTensor([1, 1, 8, 8], seed: 15, range: 0...1, requiresGrad: false)
        let frozen = try VisionTransformer.load(from: root + "/weights.h5", trainable: false)
        XCTAssertTrue(frozen.namedParameters().isEmpty)
        let (a, b) = withoutGradients { (model.image(pixels), frozen(pixels)) }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a.data, count: a.count)), Array(UnsafeBufferPointer(start: b.data, count: b.count)))
        XCTAssertEqual(loaded.temperature, model.temperature)
        XCTAssertThrowsError(try VisionTransformer.load(from: root + "/missing.h5", trainable: false)) {
            XCTAssert("\($0)".contains("fusion encoder train"), "\($0)")
        }
        XCTAssertThrowsError(try VisionTransformer.load(from: "results/autoencoders/vq/weights.h5", trainable: false)) {
            XCTAssert("\($0)".contains("not vision encoder weights"), "\($0)")
        }
    }
}

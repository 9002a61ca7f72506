// Chameleon (arXiv 2405.09818): which position predicts what on a small packed example, the
// autoregressive image sampler (cache against full passes, modality, context), and the two-class
// fixture trained end to end: the loss falls, prompts of each class generate images of that class,
// captions of each class's images name it. The fixture is shared with ShowoTests.
import XCTest
@testable import Fusion

/// Two classes of tiny 2×2 code images with captions (the issue's fixture): class 0 "dark …" with
/// codes from {0, 1, 2}, class 1 "light …" with codes from {3, 4, 5}. A code's intensity is its index,
/// so an image's mean intensity tells the classes apart (< 2.5: dark).
enum TwoClassFixture {
    static let vocabulary = testVocabulary(imageCodes: 6)
    /// "dark", "light".
    static let classWords: [Int32] = [1, 2]
    /// Words that say nothing about the class ("a", "shirt", …).
    static let fillers: [Int32] = Array(3...11)
    static let classCodes: [[Int32]] = [[0, 1, 2], [3, 4, 5]]

    static func intensity(_ codes: [Int32]) -> Float { Float(codes.reduce(0, +)) / Float(max(codes.count, 1)) }
    static func looksLike(_ codes: [Int32]) -> Int { intensity(codes) < 2.5 ? 0 : 1 }

    /// A recipe preset at the fixture's size: D 32, 2 layers, 2×2 images of 6 codes.
    static func config(_ preset: RecipeConfig) -> RecipeConfig {
        var config = preset
        config.model.width = 32
        config.model.layers = 2
        config.model.heads = 2
        config.model.mlpHidden = 64
        config.model.contextLength = 40
        config.model.initStd = 0.02
        config.imageGrid = 2
        config.imageCodes = 6
        config.captionDropout = 0.1
        return config
    }

    static func caption(of label: Int, _ generator: inout RandomGenerator) -> [Int32] {
        [classWords[label], fillers[generator.nextInt(below: fillers.count)]]
    }

    static func image(of label: Int, _ generator: inout RandomGenerator) -> [Int32] {
        (0..<4).map { _ in classCodes[label][generator.nextInt(below: 3)] }
    }

    /// Trains `model` with AdamW for `steps` steps on batches of 8 documents, each a random class,
    /// half caption → image (caption dropped with the recipe's probability) and half image → caption.
    /// Returns each step's loss.
    static func train(_ model: FusionModel, steps: Int, seed: UInt64) throws -> [Float] {
        var data = RandomGenerator(seed: seed).split(key: "data")
        var objective = RandomGenerator(seed: seed).split(key: "objective")
        let optimizer = AdamW(parameters: model.namedParameters(), learningRate: 0, weightDecay: 0.01)
        let schedule = WarmupCosineSchedule(peak: 1e-2, warmupSteps: 20, totalSteps: steps, floor: 1e-3)
        var losses: [Float] = []
        for step in 0..<steps {
            var documents: [Document] = []
            for k in 0..<8 {
                let label = data.nextInt(below: 2)
                let caption = caption(of: label, &data), codes = ImageContent.codes(image(of: label, &data))
                documents.append(k % 2 == 0
                    ? model.generationDocument(caption: caption, image: codes, dropCaption: model.drawCaptionDropout(generator: &data))
                    : model.understandingDocument(image: codes, caption: caption))
            }
            let batch = try model.layout.pack(documents, length: model.config.model.contextLength)
            optimizer.learningRate = schedule.rate(at: step)
            model.zeroGrad()
            let loss = model.loss(batch, generator: &objective)
            loss.total.backward()
            optimizer.step()
            losses.append(loss.total.item)
        }
        return losses
    }

    static func mean(_ values: ArraySlice<Float>) -> Float { values.reduce(0, +) / Float(max(values.count, 1)) }

    /// Trains a model of `preset` and checks the issue's claims: the loss falls clearly; prompted with
    /// each class's captions, ≥ 80 % of the generated images have that class's intensity; greedy
    /// captions of each class's images name the class and not the other; the right caption is more
    /// likely than the wrong one.
    static func trainAndCheckConditioning(_ preset: RecipeConfig, file: StaticString = #filePath, line: UInt = #line) throws {
        var generator = RandomGenerator(seed: 21)
        let model = try FusionModel(config: config(preset), vocabulary: vocabulary, generator: &generator)
        let started = Date()
        let losses = try train(model, steps: 300, seed: 5)
        let trained = Date().timeIntervalSince(started)
        let first = mean(losses[..<10]), last = mean(losses[(losses.count - 20)...])
        print("\(preset.recipe): loss \(first) (first 10 steps) → \(last) (last 20), 300 steps in \(String(format: "%.1f", trained)) s")
        XCTAssertLessThan(last, 0.5 * first, "\(preset.recipe): the loss did not fall enough", file: file, line: line)

        // Generation: 16 samples per class, guided.
        var sampling = RandomGenerator(seed: 8)
        let perClass = 16
        for label in 0..<2 {
            let captions = (0..<perClass).map { _ in caption(of: label, &sampling) }
            let images = try model.sampleImageCodes(captions: captions, guidanceScale: 2, options: TokenSamplingOptions(temperature: 1),
                                                    generator: &sampling)
            let right = images.filter { looksLike($0) == label }.count
            let meanIntensity = mean(images.map(intensity)[...])
            print("\(preset.recipe): class \(label) prompts → \(right)/\(perClass) images of that class, mean intensity \(meanIntensity)")
            XCTAssertGreaterThanOrEqual(right, perClass * 8 / 10, "\(preset.recipe): class \(label) prompts gave \(images)", file: file, line: line)
            XCTAssert(images.allSatisfy { $0.count == 4 && $0.allSatisfy { (0..<6).contains($0) } }, "\(images)", file: file, line: line)
        }

        // Understanding: greedy captions name the class; the right caption is the likelier one.
        var images: [ImageContent] = [], labels: [Int] = []
        for k in 0..<8 { labels.append(k % 2); images.append(.codes(image(of: k % 2, &sampling))) }
        let captions = try model.caption(images: images, maxTokens: 4, options: .greedy, generator: &sampling)
        for (caption, label) in zip(captions, labels) {
            XCTAssert(caption.contains(classWords[label]) && !caption.contains(classWords[1 - label]),
                      "\(preset.recipe): caption \(caption) of a class-\(label) image", file: file, line: line)
        }
        for (image, label) in zip(images, labels) {
            let filler = fillers[0]
            let right = try model.captionLogLikelihood(image: image, caption: [classWords[label], filler])
            let wrong = try model.captionLogLikelihood(image: image, caption: [classWords[1 - label], filler])
            XCTAssertGreaterThan(right, wrong, "\(preset.recipe): class-\(label) image", file: file, line: line)
        }
        print("\(preset.recipe): captions \(captions.prefix(4))")
    }
}

final class ChameleonTests: XCTestCase {
    let vocabulary = testVocabulary(imageCodes: 6)

    /// A generation document and an understanding document in one row of 20:
    ///   0 BOS  1 "1"  2 "2"  3 BOI  4–7 codes 0 5 3 2  8 EOI  9 EOS | 10 BOS  11 BOI  12–15 codes 1 1 4 0  16 EOI  17 "3"  18 EOS | 19 PAD
    func packedExample(_ model: FusionModel) throws -> PackedBatch {
        let documents = [model.generationDocument(caption: [1, 2], image: .codes([0, 5, 3, 2])),
                         model.understandingDocument(image: .codes([1, 1, 4, 0]), caption: [3])]
        return try model.layout.pack(documents, length: 20)
    }

    /// Every position predicts the next id of its document, text and codes alike, from everything
    /// before it in that document (the causal picture of `SequencePackingTests.testCausalImageAttention`).
    func testEveryPositionPredictsTheNextIDOfItsDocument() throws {
        var generator = RandomGenerator(seed: 1)
        let model = try FusionModel(config: tinyRecipe(.chameleon), vocabulary: vocabulary, generator: &generator)
        let batch = try packedExample(model)
        let (bos, eos, boi, eoi, pad) = (vocabulary.bos, vocabulary.eos, vocabulary.boi, vocabulary.eoi, vocabulary.pad)
        XCTAssertEqual(batch.ids, [bos, 1, 2, boi, 20, 25, 23, 22, eoi, eos, bos, boi, 21, 21, 24, 20, eoi, 3, eos, pad])
        // Targets: the next id; none at each EOS (end of document) and at padding.
        let targets = batch.nextTokenTargets
        XCTAssertEqual(targets, [1, 2, boi, 20, 25, 23, 22, eoi, eos, -1, boi, 21, 21, 24, 20, eoi, 3, eos, -1, -1])
        // Attention: causal everywhere, inside images too, never across the two documents.
        let mask = model.masks(for: batch)[0]
        XCTAssertEqual(mask.picture, batch.masks(imageAttention: .causal)[0].picture)
        XCTAssertFalse(mask.allows(query: 5, key: 6), "a code must not see the codes after it")
        XCTAssertTrue(mask.allows(query: 7, key: 4))
        XCTAssertFalse(mask.allows(query: 12, key: 5), "no attention across documents")

        // The loss is the mean over those 17 targets of CE + z·(log Z)²; image_loss covers the 8 whose
        // target is a code (BOI and the first three codes of each image), text_loss the other 9.
        var unused = RandomGenerator(seed: 0)
        let loss = model.loss(batch, generator: &unused)
        let logits = withoutGradients { model.tokenLogits(batch) }
        let v = vocabulary.size, z = model.config.zLoss
        var text: [Double] = [], image: [Double] = []
        for (i, target) in targets.enumerated() where target >= 0 {
            let row = Array(logits.array[(i * v)..<((i + 1) * v)])
            let peak = row.max()!
            let logZ = Double(peak) + log(row.map { exp(Double($0 - peak)) }.reduce(0, +))
            let value = logZ - Double(row[Int(target)]) + Double(z) * logZ * logZ
            if vocabulary.isImageCode(target) { image.append(value) } else { text.append(value) }
        }
        XCTAssertEqual(loss.trainedPositions, 17)
        XCTAssertEqual(text.count, 9)
        XCTAssertEqual(image.count, 8)
        XCTAssertEqual(Double(loss.total.item), (text + image).reduce(0, +) / 17, accuracy: 1e-5)
        XCTAssertEqual(Double(loss.part("text_loss")!), text.reduce(0, +) / 9, accuracy: 1e-5)
        XCTAssertEqual(Double(loss.part("image_loss")!), image.reduce(0, +) / 8, accuracy: 1e-5)
    }

    /// Greedy sampling through the cache writes the codes that greedy decoding by full forward passes
    /// writes (same prompt, same positions, logits restricted to the codes).
    func testCachedSamplingMatchesFullForwardDecoding() throws {
        // With 1-D image positions, and with 2-D ones (the full pass given the same row and column axes).
        for rope in TransformerConfig.ImageRoPE.allCases {
            var generator = RandomGenerator(seed: 4)
            var config = tinyRecipe(.chameleon, imageGrid: 3)
            config.model.imageRope = rope
            let model = try FusionModel(config: config, vocabulary: vocabulary, generator: &generator)
            let captions: [[Int32]] = [[1, 2, 3], [4]]  // different lengths: the second is left-padded
            let sampled = try model.sampleImageCodes(captions: captions, guidanceScale: 0, options: .greedy, generator: &generator)
            let d = model.config.model.width, codes = vocabulary.imageCodeRange
            for (caption, codesOut) in zip(captions, sampled) {
                var ids = [vocabulary.bos] + caption + [vocabulary.boi]
                let imageStart = ids.count
                var expected: [Int32] = []
                for _ in 0..<9 {
                    let t = ids.count, positions = (0..<t).map { Int32($0) }
                    var axes = PositionAxes(positions: positions)
                    axes.markImage(first: imageStart, count: t - imageStart, side: 3, start: Int32(imageStart))
                    let logits = withoutGradients {
                        let hidden = model.core.hiddenStates(model.core.embed(ids).reshaped([1, t, d]), positions: positions,
                                                             masks: [AttentionMask.causal(length: t)], axes: axes)
                        return model.core.logits(hidden.reshaped([t, d])).array
                    }
                    let last = Array(logits[((t - 1) * vocabulary.size)...])
                    let best = codes.max { last[Int($0)] < last[Int($1)] }!
                    expected.append(best - vocabulary.imageCodeOffset)
                    ids.append(best)
                }
                XCTAssertEqual(codesOut, expected, "\(rope.rawValue), caption \(caption)")
            }
        }
    }

    /// Chameleon never leaves the modality: an untrained model (whose logits favour text ids as often
    /// as not) still writes exactly h·w codes per image, and its captions hold only caption text ids.
    func testSamplingStaysInItsModality() throws {
        var generator = RandomGenerator(seed: 2)
        let model = try FusionModel(config: tinyRecipe(.chameleon, initStd: 1), vocabulary: vocabulary, generator: &generator)
        let images = try model.sampleImageCodes(captions: [[1], [2, 3], []], guidanceScale: 1.5,
                                                options: TokenSamplingOptions(temperature: 1.5), generator: &generator)
        XCTAssertEqual(images.count, 3)
        for image in images {
            XCTAssertEqual(image.count, model.config.imageGrid * model.config.imageGrid)
            XCTAssert(image.allSatisfy { (0..<6).contains($0) }, "\(image)")
        }
        let captions = try model.caption(images: images.map { .codes($0) }, maxTokens: 8,
                                         options: TokenSamplingOptions(temperature: 1.5), generator: &generator)
        let allowed = Set(model.captionIDs).subtracting([vocabulary.eos])
        for caption in captions {
            XCTAssertLessThanOrEqual(caption.count, 8)
            XCTAssert(caption.allSatisfy { allowed.contains($0) }, "caption \(caption) holds a special id or an image code")
        }
        // The restriction does work here: unrestricted, this model's most likely next id is a text id
        // at some of the positions that predict a code.
        let batch = try model.layout.pack(images.map { model.generationDocument(caption: [1], image: .codes($0)) }, length: 32)
        let logits = withoutGradients { model.tokenLogits(batch) }.array, v = vocabulary.size
        var textWins = 0
        for (i, target) in batch.nextTokenTargets.enumerated() where vocabulary.isImageCode(target) {
            let row = logits[(i * v)..<((i + 1) * v)]
            if !vocabulary.isImageCode(Int32(row.indices.max { row[$0] < row[$1] }! - i * v)) { textWins += 1 }
        }
        XCTAssertGreaterThan(textWins, 0)
    }

    func testCodeSamplingOfAContinuousRecipeIsRefusedWithTheRecipe() throws {
        var generator = RandomGenerator(seed: 0)
        let model = try FusionModel(config: tinyRecipe(.transfusion), vocabulary: testVocabulary(imageCodes: 0), generator: &generator)
        XCTAssertThrowsError(try model.sampleImageCodes(captions: [[1]], guidanceScale: 0, options: .greedy, generator: &generator)) {
            XCTAssert("\($0)".contains("transfusion") && "\($0)".contains("sampleImageLatents"), "\($0)")
        }
    }

    func testPromptAndImageLongerThanTheContextAreRefusedWithTheLengths() throws {
        var generator = RandomGenerator(seed: 0)
        let model = try FusionModel(config: tinyRecipe(.chameleon, imageGrid: 4), vocabulary: vocabulary, generator: &generator)
        // BOS + 14 + BOI = 16 prompt positions, 16 codes and EOI: 33 > 32.
        XCTAssertThrowsError(try model.sampleImageCodes(captions: [Array(repeating: 3, count: 14)], guidanceScale: 0,
                                                        options: .greedy, generator: &generator)) {
            XCTAssertEqual($0 as? SequenceLengthError, SequenceLengthError(documentLength: 33, contextLength: 32))
        }
        XCTAssertThrowsError(try model.caption(images: [.codes(Array(repeating: 0, count: 16))], maxTokens: 20,
                                               options: .greedy, generator: &generator)) {
            XCTAssert("\($0)".contains("39") && "\($0)".contains("32"), "\($0)")  // BOS BOI 16 EOI + 20
        }
    }

    func testTwoClassFixtureTrainsAndConditionsGenerationAndCaptions() throws {
        try TwoClassFixture.trainAndCheckConditioning(.chameleon)
    }
}

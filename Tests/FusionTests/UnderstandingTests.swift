// The understanding side (UnderstandingConfig): the cross-attention kernel against a direct
// computation and finite differences, every connector and Flamingo's gated layer under gradient
// checks, and the model-level rules: where a pixel image sits in the sequence (nowhere under
// cross-attention), who sees it, that gates at 0 leave the language model bit for bit as it was, and
// that the cached caption decoder reads the image as the full forward pass does.
import XCTest
@testable import Fusion

final class UnderstandingTests: XCTestCase {
    // MARK: The kernel

    /// Allowed flags with an empty first query row in sequence 0 and a partial pattern elsewhere.
    func mask(b: Int, tq: Int, tk: Int) -> CrossAttentionMask {
        (0..<b).map { s in (0..<(tq * tk)).map { f in
            let (i, j) = (f / tk, f % tk)
            return !(s == 0 && i == 0) && (j + i + s) % 3 != 0
        } }
    }

    func testCrossAttentionAgainstADirectComputation() {
        let (b, tq, tk, h, dh) = (2, 3, 5, 2, 4)
        let q = testTensor([b, tq, h, dh], seed: 1, requiresGrad: false), k = testTensor([b, tk, h, dh], seed: 2, requiresGrad: false)
        let v = testTensor([b, tk, h, dh], seed: 3, requiresGrad: false)
        let allowed = mask(b: b, tq: tq, tk: tk)
        let out = crossAttention(query: q, key: k, value: v, allowed: allowed)
        for s in 0..<b {
            for head in 0..<h {
                for i in 0..<tq {
                    // softmax over the allowed keys of q·k/√Dh, in Float64; no key: zeros.
                    let visible = (0..<tk).filter { allowed[s][i * tk + $0] }
                    let scores = visible.map { j in
                        (0..<dh).reduce(0.0) { $0 + Double(q.data[((s * tq + i) * h + head) * dh + $1]) * Double(k.data[((s * tk + j) * h + head) * dh + $1]) } / Double(dh).squareRoot()
                    }
                    let top = scores.max() ?? 0, weights = scores.map { Foundation.exp($0 - top) }, total = weights.reduce(0, +)
                    for c in 0..<dh {
                        let expected = zip(visible, weights).reduce(0.0) { $0 + $1.1 / total * Double(v.data[((s * tk + $1.0) * h + head) * dh + c]) }
                        XCTAssertEqual(Double(out.data[((s * tq + i) * h + head) * dh + c]), visible.isEmpty ? 0 : expected, accuracy: 1e-5)
                    }
                }
            }
        }
        // Without a mask every key is seen: the same as a mask of all true.
        let all = crossAttention(query: q, key: k, value: v)
        let allTrue = crossAttention(query: q, key: k, value: v, allowed: Array(repeating: Array(repeating: true, count: tq * tk), count: b))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: all.data, count: all.count)), Array(UnsafeBufferPointer(start: allTrue.data, count: allTrue.count)))
    }

    func testCrossAttentionGradients() {
        let (b, tq, tk, h, dh) = (2, 3, 4, 2, 2)
        let allowed = mask(b: b, tq: tq, tk: tk)
        let inputs = [testTensor([b, tq, h, dh], seed: 4), testTensor([b, tk, h, dh], seed: 5), testTensor([b, tk, h, dh], seed: 6)]
        let report = gradientCheck(inputs) { crossAttention(query: $0[0], key: $0[1], value: $0[2], allowed: allowed) }
        XCTAssert(report.passed, "\(report.failures)")
        // The empty query row passes no gradient to its query.
        XCTAssertEqual((0..<(h * dh)).map { inputs[0].grad!.data[$0] }, Array(repeating: 0, count: h * dh))
    }

    // MARK: Connectors and layers

    func understandingConfig(_ connector: UnderstandingConfig.Connector, fusion: UnderstandingConfig.Fusion = .sequence) -> UnderstandingConfig {
        var config = UnderstandingConfig()
        config.encoder = .patches
        config.connector = connector
        config.fusion = fusion
        config.imageSide = 8
        config.imageChannels = 1
        config.patchSize = 2
        config.queries = 3
        config.connectorLayers = 1
        return config
    }

    func testEveryConnectorsGradientAndTokenCount() throws {
        for connector in UnderstandingConfig.Connector.allCases {
            let config = understandingConfig(connector)
            try config.validate(layers: 2)
            var generator = RandomGenerator(seed: 7)
            let reader = ImageUnderstanding(config: config, encoder: nil, width: 8, heads: 2, generator: &generator)
            let pixels = testTensor([2, 1, 8, 8], seed: 8, range: 0...1)
            let tokens = reader.tokens(pixels)
            XCTAssertEqual(tokens.shape, [2, config.connectorTokens(side: 8), 8], "\(connector)")
            XCTAssertEqual(tokens.shape[1], [.linear: 16, .mlp: 16, .pixelShuffle: 4, .resampler: 3, .qformer: 3][connector]!)
            let report = gradientCheck([pixels] + reader.parameters) { _ in reader.tokens(pixels) }
            XCTAssert(report.passed, "\(connector): \(report.failures)")
        }
    }

    func testPatchesAndPixelShuffleMoveValuesWhereTheySay() {
        var generator = RandomGenerator(seed: 1)
        let reader = ImageUnderstanding(config: understandingConfig(.linear), encoder: nil, width: 8, heads: 2, generator: &generator)
        // A 2-channel 4×4 image whose pixel (c, y, x) holds (c·16 + y·4 + x) / 32.
        let pixels = Tensor((0..<32).map { Float($0) / 32 }, shape: [1, 2, 4, 4])
        let patches = reader.features(pixels)  // p = 2: a 2×2 grid of patches, 8 values each
        XCTAssertEqual(patches.shape, [1, 4, 8])
        // Patch (1, 0) (row 1, column 0), channel 1, its row 1, column 0: pixel (1, 3, 0).
        XCTAssertEqual(patches.data[2 * 8 + 1 * 4 + 1 * 2 + 0], 2 * Float(16 + 12 + 0) / 32 - 1)
        // Pixel shuffle: merged token 0 holds patches 0, 1 (first row) then 2, 3 of a 2×2 grid.
        let features = Tensor((0..<16).map(Float.init), shape: [1, 4, 4])  // patch i holds 4i…4i+3
        let merged = pixelShuffle(features, grid: 2)
        XCTAssertEqual(merged.shape, [1, 1, 16])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: merged.data, count: 16)), (0..<16).map(Float.init))
        let wide = pixelShuffle(Tensor((0..<16).map(Float.init), shape: [1, 16, 1]), grid: 4)  // 4×4 grid, one value each
        XCTAssertEqual(Array(UnsafeBufferPointer(start: wide.data, count: 16)), [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15])
    }

    func testGridPositionEmbeddingIsTheSineCosineFormula() {
        let e = gridPositionEmbedding(grid: 2, full: 4, width: 8)  // a thumbnail's 2×2 grid in units of a 4×4 one
        // Patch (1, 0): row coordinate (1 + 0.5)·2 = 3, column 1; quarter = 2 frequencies 1 and 1/100.
        let row = Array(UnsafeBufferPointer(start: e.data + 2 * 8, count: 8))
        let expected: [Float] = [Foundation.sin(3), Foundation.sin(0.03), Foundation.cos(3), Foundation.cos(0.03),
                                 Foundation.sin(1), Foundation.sin(0.01), Foundation.cos(1), Foundation.cos(0.01)]
        for (a, b) in zip(row, expected) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    func testGatedCrossAttentionGradient() {
        var generator = RandomGenerator(seed: 2)
        let layer = GatedCrossAttention(width: 8, heads: 2, generator: &generator)
        layer.attentionGate.data[0] = 0.7
        layer.mlpGate.data[0] = -0.4
        let x = testTensor([2, 3, 8], seed: 9), features = testTensor([2, 4, 8], seed: 10)
        let allowed = mask(b: 2, tq: 3, tk: 4)
        let report = gradientCheck([x, features] + layer.parameters) { _ in
            layer(x, context: CrossAttentionContext(features: features, allowed: allowed))
        }
        XCTAssert(report.passed, "\(report.failures)")
    }

    // MARK: The model

    let vocabulary = testVocabulary(imageCodes: 6)

    func model(_ fusion: UnderstandingConfig.Fusion, connector: UnderstandingConfig.Connector = .mlp,
               preset: RecipeConfig = .chameleon, encoder: UnderstandingConfig.Encoder = .patches) throws -> FusionModel {
        var config = tinyRecipe(preset)
        config.understanding = understandingConfig(connector, fusion: fusion)
        config.understanding.encoder = encoder
        config.understanding.crossAttentionEvery = 1
        var generator = RandomGenerator(seed: 11)
        return try FusionModel(config: config, vocabulary: vocabulary, generator: &generator)
    }

    func pixels(_ seed: UInt64) -> Tensor { testTensor([1, 8, 8], seed: seed, range: 0...1, requiresGrad: false) }

    /// Row 0: text [1, 2]; then an image → caption [3, 4] document.
    func documents(_ model: FusionModel, image seed: UInt64 = 20) -> [Document] {
        [model.textDocument([1, 2]), model.understandingDocument(image: .pixels(pixels(seed)), caption: [3, 4])]
    }

    func logits(_ model: FusionModel, _ batch: PackedBatch) -> Tensor { withoutGradients { model.tokenLogits(batch) } }

    func values(_ t: Tensor, rows: Range<Int>, width: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: t.data + rows.lowerBound * width, count: rows.count * width))
    }

    func testTheCrossAttentionLayersCountAsLanguageModelParameters() throws {
        for every in [1, 2] {
            var config = tinyRecipe(.chameleon)
            config.understanding = understandingConfig(.linear, fusion: .crossAttention)
            config.understanding.crossAttentionEvery = every
            var generator = RandomGenerator(seed: 1)
            let model = try FusionModel(config: config, vocabulary: vocabulary, generator: &generator)
            let core = model.core.parameterCount - model.core.tokenEmbedding.count - model.core.outputHead.count
            XCTAssertEqual(model.core.crossAttention.count, [1: 2, 2: 1][every]!)
            XCTAssertEqual(config.nonEmbeddingParameterCount, core)
        }
    }

    func testUnderCrossAttentionAnImageNeverEntersTheSequence() throws {
        let model = try model(.crossAttention)
        let batch = try model.layout.pack(documents(model), length: 14, rows: 1)
        let (bos, eos, boi, eoi, pad) = (vocabulary.bos, vocabulary.eos, vocabulary.boi, vocabulary.eoi, vocabulary.pad)
        XCTAssertEqual(batch.ids, [bos, 1, 2, eos, bos, boi, eoi, 3, 4, eos, pad, pad, pad, pad])
        XCTAssertEqual(batch.imageIndex, Array(repeating: -1, count: 14))
        XCTAssertEqual(batch.images.map(\.count), [0])
        // Only the positions of the image's document from its EOI on see its features.
        let context = try XCTUnwrap(model.crossAttentionContext(batch))
        let k = context.features.shape[1]
        XCTAssertEqual(k, 16)
        XCTAssertEqual((0..<14).map { t in context.allowed[0][t * k..<(t + 1) * k].allSatisfy { $0 } },
                       [false, false, false, false, false, false, true, true, true, true, false, false, false, false])
        XCTAssertEqual((0..<14).map { t in context.allowed[0][t * k..<(t + 1) * k].contains(true) },
                       [false, false, false, false, false, false, true, true, true, true, false, false, false, false])
    }

    func testGatesAtZeroLeaveTheLanguageModelBitForBit() throws {
        let crossed = try model(.crossAttention), plain = try model(.sequence, encoder: .shared)
        XCTAssertEqual(crossed.core.crossAttention.count, 2)
        let batch = try crossed.layout.pack(documents(crossed), length: 14, rows: 1)
        let (t, d) = (batch.length, crossed.config.model.width)
        var inputs: Tensor { crossed.core.embed(batch.ids).reshaped([1, t, d]) }
        let context = try XCTUnwrap(crossed.crossAttentionContext(batch))
        let withImage = withoutGradients { crossed.core.hiddenStates(inputs, positions: batch.positions, masks: crossed.masks(for: batch), context: context) }
        // The core without cross-attention layers, from the same seed: its own weights are the same.
        let without = withoutGradients { plain.core.hiddenStates(inputs, positions: batch.positions, masks: crossed.masks(for: batch)) }
        XCTAssertEqual(values(withImage, rows: 0..<t, width: d), values(without, rows: 0..<t, width: d))
        // An opened attention gate lets the image in, after its EOI only. (An opened feed-forward gate
        // changes every position, image or not, as Flamingo's dense layer does.)
        for layer in crossed.core.crossAttention { layer.attentionGate.data[0] = 1 }
        let opened = withoutGradients { crossed.core.hiddenStates(inputs, positions: batch.positions, masks: crossed.masks(for: batch), context: context) }
        XCTAssertEqual(values(opened, rows: 0..<6, width: d), values(without, rows: 0..<6, width: d))
        XCTAssertNotEqual(values(opened, rows: 6..<10, width: d), values(without, rows: 6..<10, width: d))
    }

    func testTheImageReachesOnlyTheTextAfterIt() throws {
        for fusion in UnderstandingConfig.Fusion.allCases {
            let model = try model(fusion)
            for layer in model.core.crossAttention { layer.attentionGate.data[0] = 1 }
            let a = try model.layout.pack(documents(model, image: 20), length: 32, rows: 1)
            let b = try model.layout.pack(documents(model, image: 21), length: 32, rows: 1)
            let n = model.config.understanding.sequencePositions
            XCTAssertEqual(n, [.sequence: 16, .crossAttention: 0, .hybrid: 4][fusion]!)
            XCTAssertEqual(a.imageIndex.filter { $0 >= 0 }.count, n)
            let (la, lb, v) = (logits(model, a), logits(model, b), vocabulary.size)
            let eoi = 6 + n  // BOS 1 2 EOS BOS BOI [image] EOI
            XCTAssertEqual(values(la, rows: 0..<6, width: v), values(lb, rows: 0..<6, width: v), "\(fusion)")
            XCTAssertNotEqual(values(la, rows: eoi..<(eoi + 3), width: v), values(lb, rows: eoi..<(eoi + 3), width: v), "\(fusion)")
            // No position predicts a pixel position or is trained from one: BOI and the image predict nothing.
            let targets = a.nextTokenTargets
            XCTAssertEqual(Array(targets[5...(5 + n)]), Array(repeating: -1, count: n + 1), "\(fusion)")
            XCTAssertEqual(Array(targets[eoi...(eoi + 2)]), [3, 4, vocabulary.eos], "\(fusion)")
        }
    }

    func testEveryRecipeTrainsThroughAnUnderstandingEncoder() throws {
        // One gradient step of each recipe's loss on a batch with a pixel image and a generation image
        // reaches the connector and (under cross-attention) the gates; the loss is finite.
        for (preset, codes) in [(RecipeConfig.chameleon, 6), (.showo, 6), (.transfusion, 0)] {
            for fusion in UnderstandingConfig.Fusion.allCases {
                var config = tinyRecipe(preset)
                config.patchSize = 1
                config.understanding = understandingConfig(.resampler, fusion: fusion)
                config.understanding.crossAttentionEvery = 1
                var generator = RandomGenerator(seed: 5)
                let model = try FusionModel(config: config, vocabulary: testVocabulary(imageCodes: codes), generator: &generator)
                let generated: ImageContent = codes > 0 ? .codes([1, 2, 3, 4]) : .latents(testTensor([2, 2, 2], seed: 3, requiresGrad: false))
                let documents = [model.understandingDocument(image: .pixels(pixels(20)), caption: [3, 4]),
                                 model.generationDocument(caption: [1, 2], image: generated)]
                let batch = try model.layout.pack(documents, length: 32, rows: 1)
                var draws = RandomGenerator(seed: 6)
                let loss = model.loss(batch, generator: &draws)
                XCTAssert(loss.total.item.isFinite)
                model.zeroGrad()
                loss.total.backward()
                let named = model.namedParameters()
                let connector = named.filter { $0.name.hasPrefix("understanding.") }
                XCTAssertFalse(connector.isEmpty)
                func reached(_ parameters: [(name: String, tensor: Tensor)]) -> Bool {
                    parameters.contains { ($0.tensor.grad.map { g in (0..<g.count).contains { g.data[$0] != 0 } }) ?? false }
                }
                if fusion == .crossAttention {
                    // Gates at 0 (Flamingo's start): the gates learn first; nothing behind them moves yet.
                    let gates = named.filter { $0.name.hasSuffix("attentionGate") }
                    XCTAssertEqual(gates.count, 2)
                    XCTAssert(gates.allSatisfy { $0.tensor.grad.map { $0.data[0] != 0 } ?? false }, "\(preset.recipe) \(fusion): a gate gets no gradient")
                    XCTAssertFalse(reached(connector), "\(preset.recipe): the connector moved behind closed gates")
                    for layer in model.core.crossAttention { layer.attentionGate.data[0] = 0.5 }
                    model.zeroGrad()
                    var again = RandomGenerator(seed: 6)
                    model.loss(batch, generator: &again).total.backward()
                }
                XCTAssert(reached(connector), "\(preset.recipe) \(fusion): no gradient reaches the connector")
            }
        }
    }

    func testCachedCaptionsReadTheImageAsTheFullPassDoes() throws {
        for fusion in UnderstandingConfig.Fusion.allCases {
            let model = try model(fusion, connector: .qformer)
            for layer in model.core.crossAttention { layer.attentionGate.data[0] = 0.8; layer.mlpGate.data[0] = 0.5 }
            var generator = RandomGenerator(seed: 1)
            var options = TokenSamplingOptions()
            options.temperature = 0
            let images: [ImageContent] = [.pixels(pixels(30)), .pixels(pixels(31))]
            let captions = try model.caption(images: images, maxTokens: 5, options: options, generator: &generator)
            // Teacher-forced on its own caption, the full forward pass picks the same ids greedily.
            for (image, caption) in zip(images, captions) {
                let document = model.understandingDocument(image: image, caption: caption)
                let batch = try model.layout.pack([document], length: model.layout.length(of: document))
                let l = logits(model, batch), v = vocabulary.size, allowed = model.captionIDs
                let first = 6 + model.config.understanding.sequencePositions - 4  // EOI: BOS BOI [image] EOI
                for (k, id) in (caption + (caption.count < 5 ? [vocabulary.eos] : [])).enumerated() {
                    let row = l.data + (first + k) * v
                    let best = allowed.max { row[Int($0)] < row[Int($1)] }!
                    XCTAssertEqual(best, id, "\(fusion): token \(k)")
                }
            }
        }
    }

    func testConfigurationErrorsSayWhatToChange() {
        func message(_ change: (inout UnderstandingConfig) -> Void) -> String {
            var config = understandingConfig(.mlp)
            change(&config)
            do { try config.validate(layers: 2); return "no error" } catch { return "\(error)" }
        }
        XCTAssert(message { $0.encoder = .shared; $0.fusion = .crossAttention }.contains("encoder: patches"))
        XCTAssert(message { $0.patchSize = 3 }.contains("does not divide"))
        XCTAssert(message { $0.fusion = .hybrid; $0.patchSize = 8 }.contains("thumbnail"))
        XCTAssert(message { $0.connector = .pixelShuffle; $0.patchSize = 8 }.contains("even"))
        XCTAssert(message { $0.fusion = .crossAttention; $0.crossAttentionEvery = 3 }.contains("1...2"))
        XCTAssert(message { $0.connector = .resampler; $0.queries = 0 }.contains("queries"))
        XCTAssertEqual(message { _ in }, "no error")
    }
}

// The core: the key/value cache against the plain forward pass, and a gradient check of a whole tiny
// model under Chameleon's loss (every parameter, every switch it uses).
import XCTest
@testable import Fusion

final class TransformerTests: XCTestCase {
    func tinyCore(qkNorm: Bool, norms: TransformerConfig.NormPlacement) -> Transformer {
        var config = tinyRecipe(.chameleon).model
        config.vocabularySize = 26
        config.qkNorm = qkNorm
        config.normPlacement = norms
        var generator = RandomGenerator(seed: 7)
        return Transformer(config: config, generator: &generator)
    }

    /// Feeding a sequence in pieces through the cache gives the hidden states of one full pass.
    func testCachedForwardMatchesFullForward() {
        for (qkNorm, norms) in [(true, TransformerConfig.NormPlacement.reordered), (false, .pre)] {
            let core = tinyCore(qkNorm: qkNorm, norms: norms)
            let ids: [Int32] = [12, 3, 7, 1, 15, 20, 21, 22, 23, 16]
            let t = ids.count, d = core.config.width
            let positions = (0..<t).map { Int32($0) }
            // Positions 5..<9 form a bidirectional span (an image, as Show-o/Transfusion see it).
            let spans: [Int32] = [-1, -1, -1, -1, -1, 0, 0, 0, 0, -1]
            let full = withoutGradients {
                core.hiddenStates(core.embed(ids).reshaped([1, t, d]), positions: positions,
                                  masks: [AttentionMask(documentIDs: Array(repeating: 0, count: t), spanIDs: spans)])
            }
            let cache = KVCache(config: core.config, batch: 1)
            var pieces: [Tensor] = []
            for (range, attention) in [(0..<5, KVCache.NewTokenAttention.causal), (5..<9, .bidirectional), (9..<10, .causal)] {
                let slice = Array(ids[range])
                pieces.append(core.hiddenStates(core.embed(slice).reshaped([1, slice.count, d]),
                                                positions: Array(positions[range]), cache: cache, newTokens: attention))
            }
            XCTAssertEqual(cache.length, t)
            let cached = pieces.flatMap(\.array)
            let maxDifference = zip(full.array, cached).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(maxDifference, 1e-5, "qkNorm \(qkNorm), norms \(norms): cached vs full differ by \(maxDifference)")
        }
    }

    /// The logits of a range of ids (what the image samplers read) are those columns of the full
    /// logits, for ranges at the start, middle and end of the vocabulary.
    func testLogitsOfARangeOfIdsAreThoseColumnsOfTheFullLogits() {
        let core = tinyCore(qkNorm: true, norms: .reordered)
        let (d, v) = (core.config.width, core.config.vocabularySize)
        var generator = RandomGenerator(seed: 3)
        let hidden = Tensor.randomNormal([2, 7, d], std: 1, generator: &generator)
        let full = withoutGradients { core.logits(hidden) }.array
        for ids in [Int32(0)..<5, 9..<21, 20..<Int32(v), 0..<Int32(v)] {
            let part = core.logits(hidden, ids: ids)
            XCTAssertEqual(part.shape, [2, 7, ids.count])
            let expected = (0..<14).flatMap { row in ids.map { full[row * v + Int($0)] } }
            let difference = zip(part.array, expected).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(difference, 1e-5, "ids \(ids)")
            XCTAssertGreaterThan(expected.map(abs).max() ?? 0, 0.1, "the logits are not all near zero")
        }
    }

    /// A call with enough work to spread its (sequence, head) pairs over the cores: the new positions'
    /// attention over a cached prefix equals the dense kernel over the whole sequence (the prefix causal,
    /// the new positions one bidirectional span), and its FLOPs are counted once.
    func testCachedAttentionOverManyPairsMatchesDenseAttention() {
        var config = TransformerConfig()
        (config.width, config.heads, config.layers, config.contextLength) = (32, 2, 1, 128)
        let (b, h, dh, prefix, new) = (4, 2, 16, 40, 64)
        XCTAssertGreaterThanOrEqual(b * h * new * (prefix + new) * dh, KVCache.parallelMultiplyAdds, "the case must take the parallel path")
        let q = testTensor([b, prefix + new, h, dh], seed: 60), k = testTensor([b, prefix + new, h, dh], seed: 61)
        let v = testTensor([b, prefix + new, h, dh], seed: 62)
        let part = { (x: Tensor, start: Int, count: Int) in x.narrow(axis: 1, start: start, length: count).copy() }
        let cache = KVCache(config: config, batch: b)
        _ = cache.attend(layer: 0, query: part(q, 0, prefix), key: part(k, 0, prefix), value: part(v, 0, prefix),
                         newTokens: .causal, valid: nil)
        cache.finish(newCount: prefix, valid: nil, commit: true)
        var cached = Tensor(zeros: [1])
        let flops = FlopCounter.measure {
            cached = cache.attend(layer: 0, query: part(q, prefix, new), key: part(k, prefix, new), value: part(v, prefix, new),
                                  newTokens: .bidirectional, valid: nil)
        }
        XCTAssertEqual(flops, Int64(b * h * new * (prefix + new) * (4 * dh + 5)))
        let spans = (0..<(prefix + new)).map { Int32($0 < prefix ? -1 : 0) }
        let mask = AttentionMask(documentIDs: [Int32](repeating: 0, count: prefix + new), spanIDs: spans)
        let dense = withoutGradients { denseAttention(query: q, key: k, value: v, masks: Array(repeating: mask, count: b)) }
        assertClose(cached, part(dense, prefix, new), tolerance: 1e-5)
    }

    /// An uncommitted call leaves the cache as it was, so a diffusion step can be repeated.
    func testUncommittedCallDoesNotGrowTheCache() {
        let core = tinyCore(qkNorm: true, norms: .pre)
        let cache = KVCache(config: core.config, batch: 1)
        let d = core.config.width
        _ = core.hiddenStates(core.embed([12, 3]).reshaped([1, 2, d]), positions: [0, 1], cache: cache)
        let first = core.hiddenStates(core.embed([4, 5]).reshaped([1, 2, d]), positions: [2, 3], cache: cache,
                                      newTokens: .bidirectional, commit: false)
        let again = core.hiddenStates(core.embed([4, 5]).reshaped([1, 2, d]), positions: [2, 3], cache: cache,
                                      newTokens: .bidirectional, commit: false)
        XCTAssertEqual(cache.length, 2)
        XCTAssertEqual(first.array, again.array)
    }

    /// Left padding marked invalid changes nothing for the real tokens after it.
    func testPaddingInTheCacheIsInvisible() {
        let core = tinyCore(qkNorm: true, norms: .pre)
        let d = core.config.width
        let plain = KVCache(config: core.config, batch: 1)
        let a = core.hiddenStates(core.embed([12, 3, 4]).reshaped([1, 3, d]), positions: [0, 1, 2], cache: plain)
        let padded = KVCache(config: core.config, batch: 1)
        let b = core.hiddenStates(core.embed([14, 14, 12, 3, 4]).reshaped([1, 5, d]), positions: [0, 0, 0, 1, 2],
                                  cache: padded, valid: [[false, false, true, true, true]])
        let tail = Array(b.array[(2 * d)...])
        XCTAssertLessThan(zip(a.array, tail).map { abs($0 - $1) }.max()!, 1e-5)
    }

    func testWholeModelGradientUnderChameleonLoss() throws {
        var generator = RandomGenerator(seed: 3)
        let model = try FusionModel(config: tinyRecipe(.chameleon), vocabulary: testVocabulary(imageCodes: 6), generator: &generator)
        let documents = [Document([.text([1, 2]), .image(.codes([0, 5, 3, 2]))]), Document([.image(.codes([1, 1, 4, 0])), .text([3, 4])])]
        let batch = try model.layout.pack(documents, length: 12)
        XCTAssertEqual(batch.rows, 2)
        var unused = RandomGenerator(seed: 0)
        assertGradientsMatch(model.parameters, epsilon: 3e-3, rtol: 3e-2, atol: 3e-3) { _ in
            model.loss(batch, generator: &unused).total
        }
    }

    func testParameterCountMatchesTheFormula() {
        let core = tinyCore(qkNorm: true, norms: .pre)
        let embeddings = 2 * core.config.vocabularySize * core.config.width
        XCTAssertEqual(core.parameterCount - embeddings, core.config.nonEmbeddingParameterCount)
    }

    func testRecipeMismatchesAreExplained() {
        var generator = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try FusionModel(config: .transfusion, vocabulary: testVocabulary(imageCodes: 6), generator: &generator)) {
            XCTAssert("\($0)".contains("continuous"), "\($0)")
        }
        XCTAssertThrowsError(try FusionModel(config: .chameleon, vocabulary: testVocabulary(imageCodes: 0), generator: &generator)) {
            XCTAssert("\($0)".contains("image codes"), "\($0)")
        }
        XCTAssertThrowsError(try RecipeConfig.preset(named: "dalle")) { XCTAssert("\($0)".contains("chameleon, showo, transfusion")) }
    }

    /// Prompts of different lengths, left-padded in one batch, prefill to the hidden states each gets alone,
    /// image spans bidirectional for Show-o.
    func testPrefillOfLeftPaddedPromptsMatchesEachAlone() throws {
        var generator = RandomGenerator(seed: 5)
        let model = try FusionModel(config: tinyRecipe(.showo), vocabulary: testVocabulary(imageCodes: 6), generator: &generator)
        let prompts = [Document([.text([1, 2, 3]), .image(.codes([0, 5, 3, 2]))]), Document([.text([4])])]
        let batch = try model.packPrompts(prompts)
        XCTAssertEqual(batch.length, 10)
        XCTAssertEqual(Array(batch.documentIDs[10..<17]), Array(repeating: -1, count: 7))
        let cache = KVCache(config: model.config.model, batch: 2)
        let hidden = model.prefill(batch, cache: cache)
        let d = model.config.model.width
        for (row, prompt) in prompts.enumerated() {
            let alone = try model.layout.pack([prompt], length: model.layout.length(of: prompt, closed: false), closed: false)
            let reference = withoutGradients {
                model.core.hiddenStates(model.inputEmbeddings(alone), positions: alone.positions, masks: model.masks(for: alone))
            }
            let last = Array(hidden.array[((row * 10 + 9) * d)..<((row * 10 + 10) * d)])
            let expected = Array(reference.array[((alone.length - 1) * d)...])
            XCTAssertLessThan(zip(last, expected).map { abs($0 - $1) }.max()!, 1e-5, "prompt \(row)")
        }
    }
}

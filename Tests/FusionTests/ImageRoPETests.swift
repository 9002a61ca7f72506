// 2-D rotary positions for images (recipe.model.image_rope: 2d, M-RoPE after Qwen2-VL §2.1): text is
// rotated exactly as by 1-D RoPE, an image token by its grid row and column on their own frequency
// sections, the fused kernel's gradient under those angles, and the cached diffusion sampler against the
// full forward pass with the same axes (the autoregressive one: ChameleonTests).
import XCTest
@testable import Fusion

final class ImageRoPETests: XCTestCase {
    func testTextIsRotatedExactlyAsByOneDimensionalRoPE() {
        let qkv = testTensor([2, 5, 3, 2, 8], seed: 1, requiresGrad: false)
        let positions: [Int32] = [0, 1, 2, 3, 4, 0, 1, 2, 0, 1]
        let oneD = rotaryQKV(qkv, queryNorm: nil, keyNorm: nil, positions: positions)
        let axes = PositionAxes(positions: positions)
        let mRoPE = rotaryQKV(qkv, queryNorm: nil, keyNorm: nil,
                              angles: RotaryAngles(temporal: axes.temporal, height: axes.height, width: axes.width, base: 10_000, headWidth: 8))
        XCTAssertEqual(oneD.array, mRoPE.array)
    }

    func testImageTokensTurnByRowAndColumnOnTheirOwnSections() {
        // Dh 32: 16 frequency pairs, 4 temporal, 6 height, 6 width.
        XCTAssert(RotaryAngles.sections(half: 16) == (4, 6))
        XCTAssert(RotaryAngles.sections(half: 64) == (16, 24), "Qwen2-VL's sections at Dh 128")
        var axes = PositionAxes(positions: (0..<12).map(Int32.init))
        axes.markImage(first: 3, count: 9, side: 3, start: 3)  // a 3×3 image at positions 3…11
        XCTAssertEqual(axes.temporal, [0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3])
        XCTAssertEqual(axes.height, [0, 1, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5])
        XCTAssertEqual(axes.width, [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5])
        let angles = RotaryAngles(temporal: axes.temporal, height: axes.height, width: axes.width, base: 10_000, headWidth: 32)
        let token = 8  // row 1, column 2: t 3, h 4, w 5
        for i in 0..<16 {
            let axis: Double = i < 4 ? 3 : i < 10 ? 4 : 5
            let angle = axis * Foundation.pow(10_000, -2 * Double(i) / 32)
            XCTAssertEqual(Double(angles.cosines.data[token * 16 + i]), Foundation.cos(angle), accuracy: 1e-6, "pair \(i)")
            XCTAssertEqual(Double(angles.sines.data[token * 16 + i]), Foundation.sin(angle), accuracy: 1e-6, "pair \(i)")
        }
    }

    func testFusedKernelGradientUnderMRoPE() {
        var axes = PositionAxes(positions: (0..<6).map(Int32.init))
        axes.markImage(first: 1, count: 4, side: 2, start: 1)
        let angles = RotaryAngles(temporal: axes.temporal, height: axes.height, width: axes.width, base: 10_000, headWidth: 8)
        let inputs = [testTensor([1, 6, 3, 2, 8], seed: 2), testTensor([8], seed: 3, range: 0.5...1.5), testTensor([8], seed: 4, range: 0.5...1.5)]
        let report = gradientCheck(inputs) { rotaryQKV($0[0], queryNorm: $0[1], keyNorm: $0[2], angles: angles) }
        XCTAssert(report.passed, "\(report.failures)")
    }

    let vocabulary = testVocabulary(imageCodes: 6)

    func model(_ preset: RecipeConfig, rope: TransformerConfig.ImageRoPE, grid: Int = 3, seed: UInt64 = 4) throws -> FusionModel {
        var config = tinyRecipe(preset, imageGrid: grid)
        config.model.imageRope = rope
        config.patchSize = 1
        var generator = RandomGenerator(seed: seed)
        return try FusionModel(config: config, vocabulary: preset.imageObjective.usesCodes ? vocabulary : testVocabulary(imageCodes: 0),
                               generator: &generator)
    }

    func testOnlyImagePositionsMove() throws {
        let oneD = try model(.chameleon, rope: .oneD), twoD = try model(.chameleon, rope: .twoD)
        let text = try oneD.layout.pack([oneD.textDocument([1, 2, 3, 4])], length: 8, rows: 1)
        XCTAssertEqual(oneD.tokenLogits(text).array, twoD.tokenLogits(text).array)
        XCTAssertNil(oneD.positionAxes(text))
        let image = try oneD.layout.pack([oneD.generationDocument(caption: [1], image: .codes([0, 1, 2, 3, 4, 5, 0, 1, 2]))], length: 16, rows: 1)
        let (a, b, v) = (oneD.tokenLogits(image).array, twoD.tokenLogits(image).array, vocabulary.size)
        XCTAssertEqual(Array(a[0..<(4 * v)]), Array(b[0..<(4 * v)]), "BOS, the caption and BOI, and the first code (row 0, column 0) agree")
        XCTAssertNotEqual(Array(a[(5 * v)..<(13 * v)]), Array(b[(5 * v)..<(13 * v)]))
    }

    func testCachedDiffusionStepMatchesTheFullPass() throws {
        let model = try model(.transfusion, rope: .twoD, grid: 2, seed: 8)
        let captions: [[Int32]] = [[1, 2, 3], [4]]
        var generator = RandomGenerator(seed: 6)
        var copy = generator
        let sample = try model.sampleImageLatents(captions: captions, guidanceScale: 0, sampler: .ddim, steps: 1, generator: &generator)
        let noise = Tensor.randomNormal([2, 2, 2, 2], std: 1, generator: &copy)
        let (signal, sigma) = NoiseSchedule(cosineSteps: 1_000).signalAndNoise(1)
        for (i, caption) in captions.enumerated() {
            let x = noise.narrow(axis: 0, start: i, length: 1).reshaped([2, 2, 2])
            let document = Document([.text(caption), .image(.latents(x))])
            let batch = try model.layout.pack([document], length: model.layout.length(of: document))
            let epsilon = withoutGradients {
                let (inputs, encoded) = model.latentInputs(batch, timesteps: [1])
                let hidden = model.core.hiddenStates(inputs, positions: batch.positions, masks: model.masks(for: batch), axes: model.positionAxes(batch))
                let rows = model.imagePositionRows(batch).map { Int32($0) }
                return model.latentPatches!.unembed(embedding(hidden.reshaped([batch.length, 8]), ids: rows), encoded!).array
            }
            let expected = (0..<8).map { (x.array[$0] - sigma * epsilon[$0]) / signal }
            let got = Array(sample.array[(i * 8)..<(i * 8 + 8)])
            XCTAssertLessThan(zip(got, expected).map { abs($0 - $1) }.max()!, 1e-4, "caption \(i): \(got) vs \(expected)")
        }
    }
}

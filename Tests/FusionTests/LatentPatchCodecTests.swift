// The patch codec: patchify/unpatchify, the shapes of both encoders, and gradient checks of every
// parameter (timestep embedding included) through embed → unembed.
import XCTest
@testable import Fusion

final class LatentPatchCodecTests: XCTestCase {
    func codec(_ encoder: RecipeConfig.PatchEncoder, patchSize: Int, grid: Int = 4, seed: UInt64 = 1) -> LatentPatchCodec {
        var config = tinyRecipe(.transfusion, imageGrid: grid)
        config.patchEncoder = encoder
        config.patchSize = patchSize
        var generator = RandomGenerator(seed: seed)
        return LatentPatchCodec(config: config, generator: &generator)
    }

    func testPatchifyUnpatchifyRoundTripIsTheIdentity() {
        for p in [1, 2] {
            let latents = testTensor([3, 2, 4, 4], seed: 7, requiresGrad: false)
            let patches = LatentPatchCodec.patchify(latents, patchSize: p)
            XCTAssertEqual(patches.shape, [3 * (4 / p) * (4 / p), p * p * 2])
            let back = LatentPatchCodec.unpatchify(patches, channels: 2, grid: 4, patchSize: p)
            XCTAssertEqual(back.shape, latents.shape)
            XCTAssertEqual(back.array, latents.array)
        }
        // Patch layout for p = 2: patch (0, 1) of image 0 holds rows 0–1, columns 2–3, values ordered
        // (row, column, channel).
        let latents = Tensor((0..<32).map(Float.init), shape: [1, 2, 4, 4])
        let patches = LatentPatchCodec.patchify(latents, patchSize: 2)
        XCTAssertEqual(Array(patches.array[8..<16]), [2, 18, 3, 19, 6, 22, 7, 23])
    }

    func testShapesOfBothEncoders() {
        for encoder in RecipeConfig.PatchEncoder.allCases {
            for p in [1, 2] {
                let codec = codec(encoder, patchSize: p)
                let encoded = codec.embed(testTensor([3, 2, 4, 4], seed: 2, requiresGrad: false), timesteps: [0, 10, 999])
                XCTAssertEqual(encoded.patches.shape, [3 * codec.patchesPerImage, 8], "\(encoder) p \(p)")
                XCTAssertEqual(codec.unembed(encoded.patches, encoded).shape, [3, 2, 4, 4], "\(encoder) p \(p)")
            }
        }
    }

    /// The timestep changes every patch vector (it is added to each), and only through the embedding.
    func testTimestepEmbeddingIsAddedToEveryPatch() {
        let codec = codec(.linear, patchSize: 2)
        let latents = testTensor([1, 2, 4, 4], seed: 3, requiresGrad: false)
        let (early, late) = withoutGradients {
            (codec.embed(latents, timesteps: [1]).patches, codec.embed(latents, timesteps: [900]).patches)
        }
        let d = 8, difference = zip(late.array, early.array).map { $0 - $1 }
        let timeDifference = withoutGradients { (codec.timeEmbedding([900]) - codec.timeEmbedding([1])).array }
        for patch in 0..<4 {
            for j in 0..<d { XCTAssertEqual(difference[patch * d + j], timeDifference[j], accuracy: 1e-5) }
        }
        XCTAssertGreaterThan(timeDifference.map(abs).max()!, 1e-2)
    }

    func testGradientsOfBothEncoders() {
        for encoder in RecipeConfig.PatchEncoder.allCases {
            for p in [1, 2] {
                let codec = codec(encoder, patchSize: p, seed: 11)
                let latents = testTensor([2, 2, 4, 4], seed: 5)
                let hiddenScale = testTensor([2 * codec.patchesPerImage, 8], seed: 6, requiresGrad: false)
                // embed → a fixed per-position mixing standing in for the core → unembed, so every
                // parameter, the skip path and the timestep embedding are on the path to the output.
                assertGradientsMatch(codec.parameters + [latents], epsilon: 3e-3, rtol: 3e-2, atol: 3e-3) { _ in
                    let encoded = codec.embed(latents, timesteps: [3, 700])
                    return codec.unembed((encoded.patches * hiddenScale).tanh(), encoded)
                }
            }
        }
    }

    func testParameterNamesCoverTheUNet() {
        let names = codec(.unet, patchSize: 2).namedParameters().map(\.name)
        for expected in ["timeIn", "patchIn", "patchOut", "unet.downConv", "unet.upConv", "unet.outConv", "unet.downTime"] {
            XCTAssert(names.contains(expected), "missing \(expected) in \(names)")
        }
        XCTAssertFalse(codec(.linear, patchSize: 2).namedParameters().map(\.name).contains { $0.hasPrefix("unet") })
    }
}

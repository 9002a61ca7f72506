// Tests of the image autoencoders (Sources/Fusion/Autoencoder): gradient checks of the layers and of
// every bottleneck operation, the straight-through estimator checked as the identity it stands for,
// nearest-code search against brute force, LFQ's entropy terms against a direct Float64 computation,
// a tiny autoencoder of each kind trained on a synthetic fixture that must beat the mean image, codes
// in range and deterministic, latents at unit variance, weights that round-trip and refuse another
// kind, strict configuration decoding, and the `fusion autoencoder` command's refusals.
//
// Shapes: B batch, C channels, H W height and width, N vectors, D code width, K codes, b bits.
import XCTest
import Foundation
@testable import Fusion

/// A tiny configuration for fast tests: 16×16 images, widths 8 and 16, an 8×8 grid.
private func tinyConfig(_ kind: AutoencoderConfig.Kind) -> AutoencoderConfig {
    var c = AutoencoderConfig(kind: kind)
    c.imageSide = 16
    c.channels = 8
    c.channelMultipliers = [1, 2]
    c.groups = 4
    c.codebookSize = 32
    c.codeDimension = 8
    c.lfqBits = 5
    c.latentChannels = 2
    c.restartInterval = 5
    c.learningRate = 3e-3
    c.warmupSteps = 5
    return c
}

/// Synthetic images [n, 1, 16, 16] in [0, 1]: a bright rectangle of random position, size and
/// brightness on a dark background — structure an autoencoder can learn in a few dozen steps.
private func fixtureImages(_ n: Int, seed: UInt64) -> Tensor {
    var g = RandomGenerator(seed: seed)
    let side = 16
    let images = Tensor(zeros: [n, 1, side, side])
    for i in 0..<n {
        let w = 4 + g.nextInt(below: 8), h = 4 + g.nextInt(below: 8)
        let x0 = g.nextInt(below: side - w + 1), y0 = g.nextInt(below: side - h + 1)
        let brightness = 0.5 + 0.5 * g.nextFloat()
        for y in y0..<(y0 + h) { for x in x0..<(x0 + w) { images.data[i * side * side + y * side + x] = brightness } }
    }
    return images
}

/// Trains a tiny autoencoder on the fixture (AdamW, constant rate after warm-up).
private func trainTiny(_ kind: AutoencoderConfig.Kind, steps: Int = 60) -> ConvAutoencoder {
    let config = tinyConfig(kind)
    let g = RandomGenerator(seed: 7)
    var initG = g.split(key: "init"), bottleneckG = g.split(key: "bottleneck")
    let model = ConvAutoencoder(config: config, generator: &initG)
    let optimizer = AdamW(parameters: model.namedParameters(), learningRate: config.learningRate, weightDecay: 0)
    let train = fixtureImages(256, seed: 1)
    let batch = 32, imageSize = 16 * 16
    for step in 0..<steps {
        let start = (step * batch) % 256
        let images = Tensor(uninitializedShape: [batch, 1, 16, 16])
        images.data.update(from: train.data + start * imageSize, count: batch * imageSize)
        optimizer.learningRate = config.learningRate * min(1, Float(step + 1) / Float(config.warmupSteps))
        let output = model.forward(images, training: true, generator: &bottleneckG)
        output.loss.backward()
        _ = clipGradientNorm(model.parameters, maxNorm: 1)
        optimizer.step()
        model.zeroGrad()
    }
    if kind == .kl { model.measureLatentScale(on: train) }
    return model
}

private func meanSquaredDifference(_ a: Tensor, _ b: Tensor) -> Double {
    var total = 0.0
    for i in 0..<a.count { let e = Double(a.data[i] - b.data[i]); total += e * e }
    return total / Double(a.count)
}

final class AutoencoderTests: XCTestCase {
    // MARK: Gradient checks of the layers (conv, GroupNorm, SiLU, resampling)

    func testResidualBlockGradientsMatchFiniteDifferences() {
        var g = RandomGenerator(seed: 3)
        let block = ResidualBlock(4, 6, groups: 2, generator: &g)  // with a 1×1 skip
        let x = testTensor([2, 4, 4, 4], seed: 11)
        let parameters = block.parameters
        // Non-trivial norm affines, so that their gradients are not checked at the identity only.
        for p in parameters where p.rank == 1 { for i in 0..<p.count { p.data[i] += 0.1 * Float(i % 3) } }
        assertGradientsMatch([x] + parameters) { _ in block(x) }
    }

    func testDownsampleAndUpsampleGradientsMatchFiniteDifferences() {
        var g = RandomGenerator(seed: 4)
        let down = Downsample(channels: 3, generator: &g), up = Upsample(channels: 3, generator: &g)
        let x = testTensor([1, 3, 4, 4], seed: 12)
        assertGradientsMatch([x] + down.parameters + up.parameters) { _ in up(down(x)) }
    }

    func testEncoderDecoderShapes() {
        var g = RandomGenerator(seed: 5)
        let config = tinyConfig(.kl)
        let encoder = ConvEncoder(config: config, generator: &g), decoder = ConvDecoder(config: config, generator: &g)
        let z = withoutGradients { encoder(fixtureImages(3, seed: 2)) }
        XCTAssertEqual(z.shape, [3, 2 * config.latentChannels, 8, 8])
        let y = withoutGradients { decoder(z.narrow(axis: 1, start: 0, length: config.latentChannels)) }
        XCTAssertEqual(y.shape, [3, 1, 16, 16])
        XCTAssertEqual(AutoencoderConfig().gridSide, 8, "the default 32×32 input must give an 8×8 grid")
    }

    // MARK: Straight-through

    func testStraightThroughForwardsTheQuantizedValuesAndPassesTheGradientUnchanged() {
        let z = testTensor([3, 5], seed: 21)
        let q = Tensor(z.array.map { $0 > 0 ? 1 : -1 }, shape: [3, 5])
        let y = straightThrough(z, quantized: q)
        XCTAssertEqual(y.array, q.array)
        let upstream = testTensor([3, 5], seed: 22, requiresGrad: false)
        y.backward(gradient: upstream)
        // Exactly the identity: the same numbers, not merely close.
        XCTAssertEqual(z.grad?.array, upstream.array, "straight-through must copy the gradient to its input unchanged")
    }

    // MARK: Vector quantisation

    func testNearestCodesMatchBruteForce() {
        let z = testTensor([50, 4], seed: 31, requiresGrad: false)
        let codebook = testTensor([16, 4], seed: 32, requiresGrad: false)
        let codes = nearestCodes(z, codebook: codebook)
        for n in 0..<50 {
            var best = 0, bestDistance = Double.infinity
            for k in 0..<16 {
                var d = 0.0
                for j in 0..<4 { let e = Double(z[n, j] - codebook[k, j]); d += e * e }
                if d < bestDistance { bestDistance = d; best = k }
            }
            XCTAssertEqual(Int(codes[n]), best, "row \(n)")
        }
    }

    func testNearestCodeGatherGradientMatchesFiniteDifferences() {
        // Vectors near distinct codes (far from any decision boundary), so that a finite-difference
        // step never changes which code is nearest and the gather is linear in the codebook.
        let codebook = Tensor([2, 0, 0, 2, -2, 0, 0, -2, 1, 1], shape: [5, 2], requiresGrad: true)
        let z = Tensor([1.9, 0.1, -0.1, 2.1, 0.9, 1.2, -2.2, 0.1, 2.1, -0.2], shape: [5, 2])
        XCTAssertEqual(nearestCodes(z, codebook: codebook), [0, 1, 4, 2, 0])
        assertGradientsMatch([codebook]) { p in embedding(p[0], ids: nearestCodes(z, codebook: p[0])) }
    }

    func testVectorQuantizerLossGradientsAreTheClosedFormsOfEquation3() {
        var config = tinyConfig(.vq)
        config.codebookSize = 4
        config.codeDimension = 2
        config.codebookUpdate = .loss
        var g = RandomGenerator(seed: 8)
        let vq = VectorQuantizer(config: config, generator: &g)
        vq.codebook.data.update(from: [1, 0, 0, 1, -1, 0, 0, -1], count: 8)
        let z = testTensor([1, 2, 2, 2], seed: 41)  // [B, D, h, w]: 4 vectors
        // Two passes: backward consumes the graph, and the two paths share the reshaped z.
        let upstream = testTensor([1, 2, 2, 2], seed: 42, requiresGrad: false)
        vq(z, training: false, generator: &g).quantized.backward(gradient: upstream)
        XCTAssertEqual(z.grad?.array, upstream.array, "the decoder's gradient reaches z through straight-through unchanged")
        XCTAssertNil(vq.codebook.grad, "the decoder's gradient does not reach the codebook")
        z.zeroGrad()
        let out = vq(z, training: false, generator: &g)
        out.loss.backward()
        let n = 4, d = 2, beta = config.commitmentWeight
        for position in 0..<n {
            let code = Int(out.codes[position])
            for j in 0..<d {
                let zValue = z.data[j * n + position], e = vq.codebook.data[code * d + j]
                // ∂(β·mean‖z − sg(e)‖²)/∂z = 2β(z − e)/(N·D)
                XCTAssertEqual(z.grad!.data[j * n + position], 2 * beta * (zValue - e) / Float(n * d), accuracy: 1e-6)
            }
        }
        for k in 0..<4 {
            for j in 0..<d {
                // ∂(mean‖sg(z) − e‖²)/∂e_k = Σ_{n: k(n) = k} 2(e_k − z_n)/(N·D)
                var expected: Float = 0
                for position in 0..<n where Int(out.codes[position]) == k {
                    expected += 2 * (vq.codebook.data[k * d + j] - z.data[j * n + position]) / Float(n * d)
                }
                XCTAssertEqual(vq.codebook.grad?.data[k * d + j] ?? 0, expected, accuracy: 1e-6, "code \(k)")
            }
        }
    }

    func testDeadCodesAreRestartedFromEncoderOutputs() {
        var config = tinyConfig(.vq)
        config.codebookSize = 8
        config.codeDimension = 2
        config.restartInterval = 1
        var g = RandomGenerator(seed: 9)
        let vq = VectorQuantizer(config: config, generator: &g)
        // All vectors identical: after the data-dependent start every code is that vector; one wins
        // each step, the other seven are dead and restarted onto it again.
        let z = Tensor(repeating: 0.5, shape: [2, 2, 2, 2])
        _ = vq(z, training: true, generator: &g)
        XCTAssertEqual(vq.restartCount, 8 + 7, "8 codes seeded from data, then 7 unused codes restarted")
        for i in 0..<vq.codebook.count { XCTAssertEqual(vq.codebook.data[i], 0.5, accuracy: 1e-6) }
    }

    // MARK: Lookup-free quantisation

    func testLookupFreeCodesAreTheSignBits() {
        let config = tinyConfig(.lfq)  // b = 5
        let lfq = LookupFreeQuantizer(config: config)
        // [B = 1, b = 5, h = 1, w = 2]: position 0 has signs (+, −, +, −, −) → 1 + 4 = 5; position 1 all + → 31.
        let z = Tensor([0.3, 2, -0.1, 1, 0.7, 0.4, -2, 3, -0.5, 0.1], shape: [1, 5, 1, 2])
        let out = lfq(z, training: false)
        XCTAssertEqual(out.codes, [5, 31])
        XCTAssertEqual(lfq.lookup([5]).array, [1, -1, 1, -1, -1])
        XCTAssertEqual(lfqCorners(bits: 2).array, [-1, -1, 1, -1, -1, 1, 1, 1])
    }

    func testLFQEntropyTermsMatchADirectComputation() {
        let z = testTensor([7, 3], seed: 51, requiresGrad: false)
        let corners = lfqCorners(bits: 3)
        let tau: Float = 0.7
        let out = lfqEntropy(z, corners: corners, temperature: tau)
        var meanP = [Double](repeating: 0, count: 8), perSample = 0.0
        for n in 0..<7 {
            // p(c | z) ∝ exp(−‖z − c‖² / τ), from the definition (not the 2·z·c shortcut).
            let logits = (0..<8).map { k in -(0..<3).reduce(0.0) { $0 + pow(Double(z[n, $1] - corners[k, $1]), 2) } / Double(tau) }
            let peak = logits.max()!
            let weights = logits.map { exp($0 - peak) }, total = weights.reduce(0, +)
            let p = weights.map { $0 / total }
            perSample -= p.reduce(0) { $0 + ($1 > 0 ? $1 * log($1) : 0) } / 7
            for k in 0..<8 { meanP[k] += p[k] / 7 }
        }
        let batch = -meanP.reduce(0) { $0 + ($1 > 0 ? $1 * log($1) : 0) }
        XCTAssertEqual(Double(out.data[0]), perSample, accuracy: 1e-5)
        XCTAssertEqual(Double(out.data[1]), batch, accuracy: 1e-5)
    }

    func testLFQEntropyGradientMatchesFiniteDifferences() {
        let corners = lfqCorners(bits: 3)
        // τ = 1: soft assignments, so both terms have gradients of order 1 everywhere.
        assertGradientsMatch([testTensor([6, 3], seed: 52)]) { p in lfqEntropy(p[0], corners: corners, temperature: 1) }
        // τ = 0.3 with values away from 0: the sharp regime training uses.
        assertGradientsMatch([testTensor([6, 3], seed: 53, range: 0.2...0.6)], epsilon: 1e-3, rtol: 3e-2) { p in
            lfqEntropy(p[0], corners: corners, temperature: 0.3)
        }
    }

    // MARK: KL bottleneck

    func testKLSampleAndTermGradientsMatchFiniteDifferences() {
        let config = tinyConfig(.kl)  // c = 2
        let kl = GaussianLatent(config: config)
        let moments = testTensor([2, 4, 2, 2], seed: 61)
        // The same ε on every evaluation (a fresh generator with one seed): z is a smooth function of (μ, log σ²).
        assertGradientsMatch([moments]) { p in
            var g = RandomGenerator(seed: 5)
            return kl(p[0], sample: true, generator: &g).quantized
        }
        assertGradientsMatch([moments]) { p in
            var g = RandomGenerator(seed: 5)
            return kl(p[0], sample: true, generator: &g).loss
        }
        // KL of a standard normal posterior is 0.
        var g = RandomGenerator(seed: 5)
        XCTAssertEqual(kl(Tensor(zeros: [1, 4, 2, 2]), sample: false, generator: &g).loss.item, 0, accuracy: 1e-7)
    }

    // MARK: Trained fixture

    func testTinyTrainedAutoencodersReconstructBetterThanTheMeanImage() {
        let heldOut = fixtureImages(64, seed: 99)
        let train = fixtureImages(256, seed: 1)
        // The mean-image baseline: predict the training set's mean image for every image.
        let mean = Tensor(zeros: [1, 1, 16, 16])
        for i in 0..<train.count { mean.data[i % 256] += train.data[i] / 256 }
        var baseline = 0.0
        for i in 0..<heldOut.count { let e = Double(heldOut.data[i] - mean.data[i % 256]); baseline += e * e }
        baseline /= Double(heldOut.count)
        for kind in AutoencoderConfig.Kind.allCases {
            let model = trainTiny(kind)
            let error = meanSquaredDifference(model.reconstruct(heldOut), heldOut)
            XCTAssertLessThan(error, 0.6 * baseline, "\(kind): reconstruction MSE \(error) vs mean-image MSE \(baseline)")
        }
    }

    func testCodesAreInRangeAndDeterministic() {
        for kind in [AutoencoderConfig.Kind.vq, .lfq] {
            let model = trainTiny(kind, steps: 10)
            let images = fixtureImages(9, seed: 5)
            let codes = model.encodeToCodes(images)
            XCTAssertEqual(codes.count, 9)
            for row in codes {
                XCTAssertEqual(row.count, model.gridSide * model.gridSide)
                for code in row { XCTAssert(code >= 0 && Int(code) < model.codebookSize, "\(kind): code \(code) out of range") }
            }
            XCTAssertEqual(model.encodeToCodes(images), codes, "\(kind): same images, same codes")
            // Batch and single-image encodings agree.
            XCTAssertEqual(model.encodeToCodes(images.narrow(axis: 0, start: 4, length: 1))[0], codes[4])
            let decoded = model.decodeCodes(codes)
            XCTAssertEqual(decoded.shape, [9, 1, 16, 16])
            XCTAssert(decoded.array.allSatisfy { $0 >= 0 && $0 <= 1 })
            XCTAssertEqual(model.decodeCodes(codes).array, decoded.array, "\(kind): decoding is deterministic")
        }
    }

    func testKLLatentsHaveUnitVarianceOnTheirSetAndRoundTrip() {
        let model = trainTiny(.kl, steps: 20)
        let train = fixtureImages(256, seed: 1)
        let latents = model.encodeToLatents(train)
        XCTAssertEqual(latents.shape, [256, 2, 8, 8])
        let values = latents.array.map(Double.init)
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
        XCTAssertEqual(variance, 1, accuracy: 1e-3, "latents are scaled to unit variance on the set that measured s")
        XCTAssertNotEqual(model.latentScale, 1, "the scale was measured, not left at its initial value")
        XCTAssertEqual(model.encodeToLatents(train).array, latents.array, "encoding is deterministic")
        let direct = withoutGradients { () -> Tensor in
            var g = RandomGenerator(seed: 0)
            return model.forward(train.narrow(axis: 0, start: 0, length: 4), training: false, generator: &g).reconstruction
        }
        let viaLatents = model.decodeLatents(latents.narrow(axis: 0, start: 0, length: 4))
        // decodeLatents undoes the scale: the same images as decoding the posterior means directly.
        var worst: Float = 0, first = ""
        for i in 0..<direct.count {
            let difference = abs(viaLatents.data[i] - min(1, max(0, direct.data[i])))
            if difference > worst { worst = difference }
            if difference > 1e-4 && first.isEmpty { first = "element \(i): \(viaLatents.data[i]) vs \(direct.data[i])" }
        }
        XCTAssertLessThan(worst, 1e-4, "decodeLatents(encodeToLatents(x)) differs from decoding the mean: max |difference| \(worst), first \(first)")
    }

    // MARK: Weights

    func testWeightsRoundTripAndRefuseAnotherKind() throws {
        let directory = NSTemporaryDirectory() + "fusion-ae-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        let images = fixtureImages(5, seed: 6)
        for kind in AutoencoderConfig.Kind.allCases {
            let model = trainTiny(kind, steps: 6)
            let path = "\(directory)/\(kind.rawValue).h5"
            try model.save(to: path, overwrite: false)
            let loaded = try ConvAutoencoder.load(from: path, expecting: kind)
            XCTAssertEqual(loaded.config, model.config)
            XCTAssertEqual(loaded.reconstruct(images).array, model.reconstruct(images).array, "\(kind): loaded weights reconstruct identically")
            if kind == .kl { XCTAssertEqual(loaded.latentScale, model.latentScale) }
            for other in AutoencoderConfig.Kind.allCases where other != kind {
                XCTAssertThrowsError(try ConvAutoencoder.load(from: path, expecting: other)) { error in
                    let message = "\(error)"
                    XCTAssertTrue(message.contains("holds a \(kind.rawValue) autoencoder") && message.contains("a \(other.rawValue) autoencoder"), message)
                }
            }
        }
        XCTAssertThrowsError(try ConvAutoencoder.load(from: "\(directory)/missing.h5")) { error in
            XCTAssertTrue("\(error)".contains("fusion autoencoder train"), "\(error)")
        }
    }

    // MARK: Configuration

    func testConfigurationDecodesPartiallyAndRefusesUnknownKeys() throws {
        let partial = try JSONDecoder().decode(AutoencoderConfig.self, from: Data(#"{"kind": "lfq", "lfqBits": 10}"#.utf8))
        var expected = AutoencoderConfig(kind: .lfq)
        expected.lfqBits = 10
        XCTAssertEqual(partial, expected)
        XCTAssertThrowsError(try JSONDecoder().decode(AutoencoderConfig.self, from: Data(#"{"codebook_size": 10}"#.utf8))) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("'codebook_size'") && message.contains("codebookSize"), message)
        }
        // Round trip through the JSON the weights store.
        XCTAssertEqual(try JSONDecoder().decode(AutoencoderConfig.self, from: Data(expected.json.utf8)), expected)
        var bad = AutoencoderConfig()
        bad.groups = 5
        XCTAssertTrue(bad.problems.contains { $0.contains("groups 5") }, "\(bad.problems)")
    }

    // MARK: Command line

    private func fusion(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let result = try FusionBinary.run(arguments)
        return (result.status, result.output)
    }

    func testCommandRefusesMissingDataWeightsOfAnotherKindAndUnknownKeys() throws {
        let directory = NSTemporaryDirectory() + "fusion-ae-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }

        var (status, output) = try fusion(["autoencoder", "train", "--kind", "kl", "--data", directory, "--out", directory + "/run"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("train-images-idx3-ubyte.gz is missing") && output.contains("scripts/setup"), output)

        let weights = directory + "/vq.h5"
        try trainTiny(.vq, steps: 2).save(to: weights, overwrite: false)
        (status, output) = try fusion(["autoencoder", "eval", "--weights", weights, "--kind", "kl", "--out", directory])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("holds a vq autoencoder") && output.contains("--kind kl"), output)

        try #"{"kind": "vq", "codebook": 10}"#.write(toFile: directory + "/bad.json", atomically: true, encoding: .utf8)
        (status, output) = try fusion(["autoencoder", "train", directory + "/bad.json", "--out", directory + "/run"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("unknown autoencoder configuration key 'codebook'") && output.contains("codebookSize"), output)
    }
}

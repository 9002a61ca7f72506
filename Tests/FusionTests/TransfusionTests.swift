// Transfusion (arXiv 2408.11039): the loss mask and attention picture on a small packed example, the
// captioning noise cap, a gradient check of the whole model under the diffusion loss (ε and flow), the
// cached sampler against the plain forward pass, the recipe and sampler errors, and the two-class
// fixture: a tiny model trained a few hundred steps must generate latents whose class can be told apart.
import XCTest
@testable import Fusion

final class TransfusionTests: XCTestCase {
    let vocabulary = testVocabulary(imageCodes: 0)

    /// Tiny Transfusion with a 2×2 latent grid and 1×1 patches: 4 positions per image.
    func tinyTransfusion(objective: RecipeConfig.DiffusionObjective = .epsilon, encoder: RecipeConfig.PatchEncoder = .linear,
                         seed: UInt64 = 3) throws -> FusionModel {
        var config = tinyRecipe(.transfusion)
        config.patchSize = 1
        config.diffusionObjective = objective
        config.patchEncoder = encoder
        var generator = RandomGenerator(seed: seed)
        return try FusionModel(config: config, vocabulary: vocabulary, generator: &generator)
    }

    func latent(_ seed: UInt64) -> Tensor { testTensor([2, 2, 2], seed: seed, requiresGrad: false) }

    /// Row 0: caption [1, 2] → image; row 1: image → caption [3].
    func packedExample(_ model: FusionModel) throws -> PackedBatch {
        let documents = [Document([.text([1, 2]), .image(.latents(latent(1)))]), Document([.image(.latents(latent(2))), .text([3])])]
        return try model.layout.pack(documents, length: 10, rows: 2)
    }

    func testLossMaskAndAttentionOfCaptionToImageAndImageToCaption() throws {
        let model = try tinyTransfusion()
        let batch = try packedExample(model)
        let (bos, eos, boi, eoi, pad) = (vocabulary.bos, vocabulary.eos, vocabulary.boi, vocabulary.eoi, vocabulary.pad)
        XCTAssertEqual(batch.ids, [bos, 1, 2, boi, pad, pad, pad, pad, eoi, eos,
                                   bos, boi, pad, pad, pad, pad, eoi, 3, eos, pad])
        // LM targets: text predicts text and BOI; BOI (→ a patch) and the patches (→ patch, EOI) predict
        // nothing; EOI predicts what follows the image; nothing crosses into padding.
        XCTAssertEqual(model.diffusionTextTargets(batch), [1, 2, boi, -1, -1, -1, -1, -1, eos, -1,
                                                           boi, -1, -1, -1, -1, -1, 3, eos, -1, -1])
        // Diffusion targets: exactly the patch positions, image by image.
        XCTAssertEqual(model.imagePositionRows(batch), [4, 5, 6, 7, 12, 13, 14, 15])
        // Captioning: only the image that precedes its caption is capped.
        XCTAssertEqual(batch.images.map { model.capsNoiseForCaptioning($0, in: batch) }, [false, true])
        // The patches see each other and everything before them; BOI and EOI stay causal.
        let masks = model.masks(for: batch)
        XCTAssertEqual(masks[0].picture, """
            x.........
            xx........
            xxx.......
            xxxx......
            xxxxxxxx..
            xxxxxxxx..
            xxxxxxxx..
            xxxxxxxx..
            xxxxxxxxx.
            xxxxxxxxxx
            """)
        XCTAssertEqual(masks[1].picture, """
            x.........
            xx........
            xxxxxx....
            xxxxxx....
            xxxxxx....
            xxxxxx....
            xxxxxxx...
            xxxxxxxx..
            xxxxxxxxx.
            .........x
            """)
        var generator = RandomGenerator(seed: 1)
        let loss = model.loss(batch, generator: &generator)
        XCTAssertEqual(loss.trainedPositions, 7 + 8)
        let text = try XCTUnwrap(loss.part("text_loss")), image = try XCTUnwrap(loss.part("image_loss"))
        XCTAssertEqual(loss.total.item, text + model.config.diffusionWeight * image, accuracy: 1e-4)
    }

    /// Drawn many times, an image that precedes its caption never gets t above the limit, while the
    /// others range over the whole schedule; the same for the flow time.
    func testCaptioningNoiseCap() throws {
        for objective in RecipeConfig.DiffusionObjective.allCases {
            let model = try tinyTransfusion(objective: objective)
            let documents = (0..<12).map { i -> Document in
                switch i % 3 {
                case 0: return Document([.text([1, 2]), .image(.latents(latent(UInt64(i))))])
                case 1: return Document([.image(.latents(latent(UInt64(i)))), .text([3, 4])])
                default: return Document([.image(.latents(latent(UInt64(i))))])  // no caption: not capped
                }
            }
            let batch = try model.layout.pack(documents, length: 30)
            let schedule = NoiseSchedule(cosineSteps: model.config.diffusionSteps)
            var generator = RandomGenerator(seed: 9)
            var capped: [Float] = [], free: [Float] = []
            for _ in 0..<100 {
                for (image, noised) in zip(batch.images, model.noiseImages(of: batch, schedule: schedule, generator: &generator).map { $0! }) {
                    if image.comesFirst && documents[image.document].segments.count == 2 { capped.append(noised.timestep) } else { free.append(noised.timestep) }
                }
            }
            XCTAssertEqual(capped.count, 400)
            let limit = Float(model.config.captioningNoiseLimit)
            XCTAssertLessThanOrEqual(capped.max()!, limit, "\(objective)")
            XCTAssertGreaterThan(capped.max()!, 0.8 * limit, "\(objective): the capped draws should still cover the range")
            XCTAssertGreaterThan(free.filter { $0 > limit }.count, free.count / 4, "\(objective): uncapped images reach past the limit")
            XCTAssertGreaterThan(capped.min()!, 0)
        }
    }

    func testWholeModelGradientUnderDiffusionLoss() throws {
        for (objective, encoder) in [(RecipeConfig.DiffusionObjective.epsilon, RecipeConfig.PatchEncoder.linear), (.flow, .linear), (.epsilon, .unet)] {
            let model = try tinyTransfusion(objective: objective, encoder: encoder)
            let batch = try packedExample(model)
            let fixed = RandomGenerator(seed: 4)
            assertGradientsMatch(model.parameters, epsilon: 3e-3, rtol: 3e-2, atol: 3e-3) { _ in
                var generator = fixed  // the same timesteps and noise in every evaluation
                return model.loss(batch, generator: &generator).total
            }
        }
    }

    /// The sampler's cached, batched, left-padded prediction equals the plain forward pass over each
    /// document: one DDIM step from the drawn noise at t = 1 returns x̂₀ of the guided ε̂.
    func testCachedSamplerStepMatchesTheFullForwardPass() throws {
        let model = try tinyTransfusion(seed: 8)
        let captions: [[Int32]] = [[1, 2, 3], [4]]
        let s: Float = 1.5
        var generator = RandomGenerator(seed: 6)
        var copy = generator
        let sample = try model.sampleImageLatents(captions: captions, guidanceScale: s, sampler: .ddim, steps: 1, generator: &generator)
        let noise = Tensor.randomNormal([2, 2, 2, 2], std: 1, generator: &copy)
        let (signal, sigma) = NoiseSchedule(cosineSteps: 1_000).signalAndNoise(1)
        for (i, caption) in captions.enumerated() {
            let x = noise.narrow(axis: 0, start: i, length: 1).reshaped([2, 2, 2])
            func epsilon(_ document: Document) throws -> [Float] {
                let batch = try model.layout.pack([document], length: model.layout.length(of: document))
                return withoutGradients {
                    let (inputs, encoded) = model.latentInputs(batch, timesteps: [1])
                    let hidden = model.core.hiddenStates(inputs, positions: batch.positions, masks: model.masks(for: batch))
                    let rows = model.imagePositionRows(batch).map { Int32($0) }
                    return model.latentPatches!.unembed(embedding(hidden.reshaped([batch.length, 8]), ids: rows), encoded!).array
                }
            }
            let conditional = try epsilon(Document([.text(caption), .image(.latents(x))]))
            let unconditional = try epsilon(Document([.image(.latents(x))]))
            let expected = (0..<8).map { j in
                let guided = (1 + s) * conditional[j] - s * unconditional[j]
                return (x.array[j] - sigma * guided) / signal
            }
            let got = Array(sample.array[(i * 8)..<(i * 8 + 8)])
            let difference = zip(got, expected).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(difference, 1e-4, "caption \(i): \(got) vs \(expected)")
        }
    }

    func testRecipeAndSamplerErrorsSayWhatToDo() throws {
        var generator = RandomGenerator(seed: 0)
        let chameleon = try FusionModel(config: tinyRecipe(.chameleon), vocabulary: testVocabulary(imageCodes: 6), generator: &generator)
        XCTAssertThrowsError(try chameleon.sampleImageLatents(captions: [[1]], guidanceScale: 0, generator: &generator)) {
            XCTAssert("\($0)".contains("chameleon") && "\($0)".contains("sampleImageCodes"), "\($0)")
        }
        let epsilon = try tinyTransfusion(), flow = try tinyTransfusion(objective: .flow)
        XCTAssertThrowsError(try epsilon.sampleImageLatents(captions: [[1]], guidanceScale: 0, sampler: .euler, generator: &generator)) {
            XCTAssert("\($0)".contains("ddim or ddpm"), "\($0)")
        }
        XCTAssertThrowsError(try flow.sampleImageLatents(captions: [[1]], guidanceScale: 0, sampler: .ddpm, generator: &generator)) {
            XCTAssert("\($0)".contains("euler or midpoint"), "\($0)")
        }
        for steps in [0, 1_001] {
            XCTAssertThrowsError(try epsilon.sampleImageLatents(captions: [[1]], guidanceScale: 0, steps: steps, generator: &generator)) {
                XCTAssert("\($0)".contains("1...1000"), "\($0)")
            }
        }
        XCTAssertThrowsError(try epsilon.sampleImageLatents(captions: [Array(repeating: 1, count: 30)], guidanceScale: 0, generator: &generator)) {
            XCTAssert($0 is SequenceLengthError, "\($0)")
        }
        XCTAssertThrowsError(try epsilon.sampleImageLatents(captions: [[25]], guidanceScale: 0, generator: &generator))
    }

    // MARK: Two-class fixture

    /// Class 0: captions "dark ⟨thing⟩" (ids 1, 3…5) with latents ≈ −1; class 1: "light ⟨thing⟩" (ids 2,
    /// 3…5) with latents ≈ +1 (± 0.1 noise). 80 % of pairs caption first, 20 % image first; 15 % of the
    /// caption-first pairs drop their caption (for guidance).
    func twoClassDocuments(count: Int, grid: Int, generator: inout RandomGenerator) -> [Document] {
        (0..<count).map { _ in
            let label = generator.nextInt(below: 2)
            let caption: [Int32] = [label == 0 ? 1 : 2, Int32(3 + generator.nextInt(below: 3))]
            let latents = Tensor.randomNormal([2, grid, grid], mean: label == 0 ? -1 : 1, std: 0.1, generator: &generator)
            if generator.nextFloat() < 0.2 { return Document([.image(.latents(latents)), .text(caption)]) }
            if generator.nextFloat() < 0.15 { return Document([.image(.latents(latents))]) }
            return Document([.text(caption), .image(.latents(latents))])
        }
    }

    /// Trains on the fixture, then samples 16 latents per class with each sampler (25 steps, guidance 2).
    func trainAndSampleTwoClasses(objective: RecipeConfig.DiffusionObjective, samplers: [DiffusionSamplerKind],
                                  encoder: RecipeConfig.PatchEncoder = .linear, grid: Int = 2, patchSize: Int = 1,
                                  steps: Int = 400, checkCaptions: Bool = false) throws {
        var config = RecipeConfig.transfusion
        config.model.width = 32
        config.model.layers = 2
        config.model.heads = 2
        config.model.mlpHidden = 64
        config.model.contextLength = 32
        config.imageGrid = grid
        config.latentChannels = 2
        config.patchSize = patchSize
        config.patchEncoder = encoder
        config.diffusionObjective = objective
        let generator = RandomGenerator(seed: 21)
        var initGenerator = generator.split(key: "init"), data = generator.split(key: "data")
        var noise = generator.split(key: "noise"), sampling = generator.split(key: "sampling")
        let model = try FusionModel(config: config, vocabulary: vocabulary, generator: &initGenerator)
        let optimizer = AdamW(parameters: model.namedParameters(), learningRate: 3e-3, weightDecay: 0)
        let schedule = WarmupCosineSchedule(peak: 3e-3, warmupSteps: 20, totalSteps: steps, floor: 3e-4)
        var totals: [Float] = [], images: [Float] = []
        let start = Date()
        for step in 0..<steps {
            let batch = try model.layout.pack(twoClassDocuments(count: 9, grid: grid, generator: &data), length: 32)
            model.zeroGrad()
            let loss = model.loss(batch, generator: &noise)
            loss.total.backward()
            _ = clipGradientNorm(model.parameters, maxNorm: 1)
            optimizer.learningRate = schedule.rate(at: step)
            optimizer.step()
            totals.append(loss.total.item)
            images.append(loss.part("image_loss")!)
        }
        let trainTime = Date().timeIntervalSince(start)
        func mean(_ xs: ArraySlice<Float>) -> Float { xs.reduce(0, +) / Float(xs.count) }
        let (firstTotal, lastTotal) = (mean(totals.prefix(20)), mean(totals.suffix(50)))
        let (firstImage, lastImage) = (mean(images.prefix(20)), mean(images.suffix(50)))
        XCTAssertLessThan(lastTotal, 0.5 * firstTotal, "total loss \(firstTotal) → \(lastTotal)")
        XCTAssertLessThan(lastImage, 0.7 * firstImage, "image loss \(firstImage) → \(lastImage)")

        let perClass = 16, values = 2 * grid * grid
        let captions: [[Int32]] = (0..<perClass).map { [1, Int32(3 + $0 % 3)] } + (0..<perClass).map { [2, Int32(3 + $0 % 3)] }
        var report = "two-class \(objective)/\(encoder) grid \(grid) p \(patchSize): loss \(firstTotal) → \(lastTotal), "
            + "image loss \(firstImage) → \(lastImage); train \(String(format: "%.1f", trainTime)) s for \(steps) steps"
        for sampler in samplers {
            let sampleStart = Date()
            let samples = try model.sampleImageLatents(captions: captions, guidanceScale: 2, sampler: sampler, steps: 25, generator: &sampling)
            let sampleTime = Date().timeIntervalSince(sampleStart)
            XCTAssertEqual(samples.shape, [2 * perClass, 2, grid, grid])
            let means = (0..<(2 * perClass)).map { i in samples.array[(i * values)..<((i + 1) * values)].reduce(0, +) / Float(values) }
            let (dark, light) = (means.prefix(perClass), means.suffix(perClass))
            let darkRight = dark.filter { $0 < 0 }.count, lightRight = light.filter { $0 > 0 }.count
            report += "; \(sampler) (\(String(format: "%.2f", sampleTime)) s): mean dark \(mean(dark)), light \(mean(light)), "
                + "right side \(darkRight)/\(perClass), \(lightRight)/\(perClass)"
            XCTAssertGreaterThanOrEqual(darkRight, perClass * 8 / 10, "\(sampler): dark samples' means \(dark)")
            XCTAssertGreaterThanOrEqual(lightRight, perClass * 8 / 10, "\(sampler): light samples' means \(light)")
            // The classes' latents are ≈ ∓1: the samples should be near, not merely on the right side.
            XCTAssertLessThan(mean(dark), -0.5, "\(sampler)")
            XCTAssertGreaterThan(mean(light), 0.5, "\(sampler)")
        }
        print(report)
        if checkCaptions { try checkCaptioning(model, grid: grid, generator: &sampling) }
    }

    /// Understanding: a clean image of each class (timestep 0 in the prompt) is captioned with its class
    /// word, and its right caption is more likely than the wrong one.
    func checkCaptioning(_ model: FusionModel, grid: Int, generator: inout RandomGenerator) throws {
        var correct = 0, likelier = 0
        let perClass = 8
        for label in 0..<2 {
            let images: [ImageContent] = (0..<perClass).map { _ in
                .latents(Tensor.randomNormal([2, grid, grid], mean: label == 0 ? -1 : 1, std: 0.1, generator: &generator))
            }
            let captions = try model.caption(images: images, maxTokens: 3, options: .greedy, generator: &generator)
            correct += captions.filter { $0.first == Int32(label + 1) }.count
            for image in images {
                let right = try model.captionLogLikelihood(image: image, caption: [Int32(label + 1), 3])
                let wrong = try model.captionLogLikelihood(image: image, caption: [Int32(2 - label), 3])
                if right > wrong { likelier += 1 }
            }
        }
        XCTAssertGreaterThanOrEqual(correct, 2 * perClass * 8 / 10, "greedy captions named the class \(correct)/\(2 * perClass) times")
        XCTAssertGreaterThanOrEqual(likelier, 2 * perClass * 8 / 10, "the right caption was likelier \(likelier)/\(2 * perClass) times")
    }

    func testTwoClassFixtureTrainsAndGeneratesConditionedImagesWithDDIMAndDDPM() throws {
        try trainAndSampleTwoClasses(objective: .epsilon, samplers: [.ddim, .ddpm], checkCaptions: true)
    }

    func testTwoClassFixtureWithFlowAndEulerAndMidpoint() throws {
        try trainAndSampleTwoClasses(objective: .flow, samplers: [.euler, .midpoint])
    }

    func testTwoClassFixtureWithUNetPatches() throws {
        // The U-Net learns the fixture more slowly than the linear patches (at 400 steps DDIM put 13 of 16
        // dark samples on the right side, at 800 all of them).
        try trainAndSampleTwoClasses(objective: .epsilon, samplers: [.ddim, .ddpm], encoder: .unet, grid: 4, patchSize: 2, steps: 800)
    }
}

// Whole training steps and image sampling of each recipe (issue 7 (c) and (d)), on the preset
// configurations of `RecipeConfig` (Chameleon: re-ordered norms, QK-norm, z-loss, causal images;
// Show-o: task tokens, masked codes, bidirectional images; Transfusion: latent patches, diffusion),
// with the core at the reference sizes of `TrainingStep.swift` (V 1,536, T 256).
//
// Training batch: synthetic packed documents that fill every row exactly: caption → image pairs
// (12–20 caption tokens; 8×8 = 64 image codes, or a 4×8×8 latent cut into 2×2 patches = 16 positions
// for Transfusion), every other pair image-first (understanding), text-only documents of 20–60
// tokens between them, and one text document closing each row. Documents restart positions and
// never attend across each other; images attend as the recipe says. Ids are uniform over the text
// ids and image codes: untrained-model timing does not depend on them.
//
// Sampling: one image per caption for 2 captions with classifier-free guidance (scale 3, so every
// forward pass runs 4 rows), each recipe at its defaults: Chameleon autoregressive with the KV cache
// (64 codes), Show-o MaskGIT over 12 steps, Transfusion DDIM over 50 steps. Reported: forward passes
// of one sampling call (core `hiddenStates` calls, prefill included; every pass serves all images of
// the call, so this is also the passes each image needs) and wall time per generated image.
import Foundation
import Fusion

/// The vocabulary of a recipe's bench model: V = 1,536 in all; code recipes spend 512 ids on codes.
func benchVocabulary(codes: Bool) -> Vocabulary {
    let text = codes ? 1_024 : 1_536, s = Int32(text - 8)
    return Vocabulary(textSize: text, imageCodes: codes ? 512 : 0, bos: s, eos: s + 1, pad: s + 2, boi: s + 3, eoi: s + 4,
                      mask: s + 5, t2i: s + 6, mmu: s + 7)
}

/// A recipe preset with its core at a reference size (the preset's own norm placement and QK-norm kept).
func benchRecipe(_ name: String, size: ReferenceSize) -> RecipeConfig {
    var config = try! RecipeConfig.preset(named: name)
    config.model.width = size.width
    config.model.layers = size.layers
    config.model.heads = size.heads
    config.model.contextLength = ReferenceSize.context
    config.imageGrid = 8
    config.latentChannels = 4
    config.patchSize = 2
    return config
}

/// B rows of T positions, each filled exactly with the documents described at the top of the file.
func syntheticBatch(_ model: FusionModel, rows: Int, generator: inout RandomGenerator) -> PackedBatch {
    let vocabulary = model.vocabulary, config = model.config, layout = model.layout, t = ReferenceSize.context
    func uniform(_ n: Int) -> Int { min(n - 1, Int(generator.nextFloat() * Float(n))) }
    func text(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(uniform(vocabulary.textSize - 8)) } }
    func image() -> ImageContent {
        if config.imageObjective.usesCodes {
            return .codes((0..<config.imagePositions).map { _ in Int32(uniform(vocabulary.imageCodes)) })
        }
        return .latents(Tensor.randomNormal([config.latentChannels, config.imageGrid, config.imageGrid], std: 1, generator: &generator))
    }
    var documents: [Document] = []
    var pairs = 0, nextIsPair = true
    for _ in 0..<rows {
        var used = 0
        while true {
            let candidate: Document
            if nextIsPair {
                let caption = text(12 + uniform(9))
                candidate = pairs % 2 == 0 ? model.generationDocument(caption: caption, image: image())
                                           : model.understandingDocument(image: image(), caption: caption)
            } else {
                candidate = model.textDocument(text(20 + uniform(41)))
            }
            let n = layout.length(of: candidate)
            if used + n + 3 > t { break }  // leave room for a closing text document of ≥ 1 token
            documents.append(candidate)
            if nextIsPair { pairs += 1 }
            nextIsPair.toggle()
            used += n
        }
        documents.append(model.textDocument(text(t - used - 2)))  // closes the row exactly
    }
    return try! layout.pack(documents, length: t, rows: rows)
}

struct RecipeStepResult {
    let recipe: String, size: ReferenceSize
    let secondsPerStep: Double
    let countedFlopsPerStep: Int64
    let estimatedFlopsPerStep: Double
    let peakResidentBytes: Int
    var tokens: Int { size.batch * ReferenceSize.context }
    var tokensPerSecond: Double { Double(tokens) / secondsPerStep }
}

func measureRecipeStep(_ recipe: String, size: ReferenceSize, steps: Int) -> RecipeStepResult {
    let config = benchRecipe(recipe, size: size)
    var generator = RandomGenerator(seed: 0)
    let model = try! FusionModel(config: config, vocabulary: benchVocabulary(codes: config.imageObjective.usesCodes),
                                 generator: &generator)
    let optimizer = AdamW(parameters: model.namedParameters(), learningRate: 3e-4)
    let batch = syntheticBatch(model, rows: size.batch, generator: &generator)
    func step() {
        model.zeroGrad()
        model.loss(batch, generator: &generator).total.backward()
        optimizer.step()
    }
    let (times, flops) = timeSteps(step, count: steps)
    let estimated = 6 * Double(model.core.config.nonEmbeddingParameterCount) * Double(size.batch * ReferenceSize.context)
    return RecipeStepResult(recipe: recipe, size: size, secondsPerStep: times[times.count / 2], countedFlopsPerStep: flops,
                            estimatedFlopsPerStep: estimated, peakResidentBytes: peakResidentBytes())
}

func printRecipeStepHeader() {
    print("recipe training step (packed caption/image/text documents, V 1536, T 256)  ms/step   tokens/s  counted GFLOP/s   MFU   6ND-MFU  peak RSS MiB")
}

func printRecipeStep(_ r: RecipeStepResult, ceiling: Double) {
    printStepRow(name: "\(r.recipe) \(r.size.name): d \(r.size.width), \(r.size.layers) layers, B \(r.size.batch)", width: 72,
                 seconds: r.secondsPerStep, tokensPerSecond: r.tokensPerSecond, counted: r.countedFlopsPerStep,
                 estimated: r.estimatedFlopsPerStep, peakBytes: r.peakResidentBytes, ceiling: ceiling)
}

// MARK: - Sampling

/// The model size sampling is timed at: the S core (untrained weights; timing does not depend on them).
let samplingSize = ReferenceSize.all[0]

struct SamplingResult {
    let recipe: String, method: String
    let images: Int
    let forwardPasses: Int
    let seconds: Double
    let countedFlops: Int64
    var secondsPerImage: Double { seconds / Double(images) }
}

func measureSampling(_ recipe: String, repeats: Int) -> SamplingResult {
    let config = benchRecipe(recipe, size: samplingSize)
    var generator = RandomGenerator(seed: 1)
    let model = try! FusionModel(config: config, vocabulary: benchVocabulary(codes: config.imageObjective.usesCodes),
                                 generator: &generator)
    let captions: [[Int32]] = [[3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26], [2, 71, 82, 81, 82, 84, 59, 4, 52, 35]]
    let options = TokenSamplingOptions(temperature: 1, topK: nil, topP: nil)
    let method: String
    func sample() {
        switch config.imageObjective {
        case .nextToken, .maskedTokens:
            _ = try! model.sampleImageCodes(captions: captions, guidanceScale: 3, options: options, steps: 12, generator: &generator)
        case .diffusion:
            _ = try! model.sampleImageLatents(captions: captions, guidanceScale: 3, sampler: .ddim, steps: 50, generator: &generator)
        }
    }
    switch config.imageObjective {
    case .nextToken: method = "autoregressive, KV cache, \(config.imagePositions) codes"
    case .maskedTokens: method = "MaskGIT, 12 steps, \(config.imagePositions) codes"
    case .diffusion: method = "DDIM, 50 steps, \(config.imagePositions) latent patches"
    }
    sample()  // warm-up
    var best = Double.infinity, passes = 0, flops: Int64 = 0
    for _ in 0..<repeats {
        let before = model.core.forwardPasses
        let start = now()
        flops = FlopCounter.measure(sample)
        best = min(best, now() - start)
        passes = model.core.forwardPasses - before
    }
    return SamplingResult(recipe: recipe, method: method, images: captions.count, forwardPasses: passes, seconds: best,
                          countedFlops: flops)
}

func printSamplingHeader() {
    print("image sampling (core S: d 128, 4 layers; 2 captions, CFG scale 3, 4 rows)  forward passes   ms/image   GFLOP/s")
}

func printSampling(_ r: SamplingResult) {
    let name = "\(r.recipe): \(r.method)"
    print(String(format: "%@ %12.1f %12.1f %9.1f", name.padding(toLength: 72, withPad: " ", startingAt: 0),
                 Double(r.forwardPasses), r.secondsPerImage * 1e3, Double(r.countedFlops) / r.seconds / 1e9))
}

// Transfusion's objective (arXiv 2408.11039, §2.2, §3.1–3.3): one transformer, two losses.
//
//   L = L_LM + λ · L_DDPM      (§3.3; λ = config.diffusionWeight, 5 in the paper)
//
// L_LM is next-token cross-entropy on the text side of every document; L_DDPM is the diffusion loss of
// every image (Ho et al. 2020, eq. 14, "simple" loss): draw t ∈ {1, …, T} uniformly per image, noise its
// latents as x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε under the cosine schedule (`NoiseSchedule`), feed the noised
// patches (with the timestep embedding) at the image's positions, and regress the core's output there,
// mapped back to latent space, onto ε with the mean squared error. Inside BOI…EOI attention is
// bidirectional (§3.2), so every patch sees the whole noised image, and the caption before it.
//
// Which positions get which target (the loss mask):
//   - a text or special position whose next position is text or special (same document) is LM-trained;
//     in particular the position before BOI predicts BOI (that is how the model decides to draw an
//     image, §3.3), and EOI predicts what follows the image;
//   - BOI and the image positions get no LM target (BOI would predict a latent patch, the last patch
//     EOI): EOI is not predicted but appended by the sampler once an image is done (§3.3, inference);
//   - every latent patch gets the diffusion target (ε, or the velocity for the flow objective).
//
// Captioning examples (§4.3.4, "Image Noising"): the paper orders 80 % of image–caption pairs caption
// first and 20 % image first, and for the image-first ones limits the noise to t ≤ 500 (half the
// schedule), so that the caption is learnt from a mostly clean image; the image still gets its
// diffusion loss. (Quoted from our reading of the paper; the text was not at hand to re-check when this
// was written.) As we read it, the cap applies to every image-first pair (the 20 % are exactly those);
// we cap an image at `config.captioningNoiseLimit` when it precedes its document's text and text follows
// it (an image-only document, e.g. an unconditional generation example, is not capped).
//
// Beyond the paper, `config.diffusionObjective == .flow` trains rectified flow (Liu et al. 2022; Esser et
// al. 2024, "Scaling Rectified Flow Transformers", §2–3): x_t = (1 − t)·x₀ + t·ε with t ∈ (0, 1) drawn
// logit-normal (t = sigmoid(n), n ~ N(0, 1), SD3's default: it favours the middle of the path, where the
// velocity is hardest to predict), target velocity v = ε − x₀. The captioning cap scales t by
// captioningNoiseLimit / T. The timestep embedding sees t·T, on the same scale as the discrete steps.
//
// Shape alphabet: B rows, T sequence, D width, V vocabulary, N = B·T, I images, C channels, h×w grid,
// P patches per image.
import Foundation

extension FusionModel {
    /// Whether an image's noise is capped for captioning: it precedes every text id of its document
    /// and some text id follows it there (the caption it is to be captioned with).
    func capsNoiseForCaptioning(_ image: PackedImage, in batch: PackedBatch) -> Bool {
        guard image.comesFirst else { return false }
        let base = image.row * batch.length, document = batch.documentIDs[base + image.start]
        var i = image.start + image.count
        while i < batch.length && batch.documentIDs[base + i] == document {
            let id = batch.ids[base + i]
            if batch.imageIndex[base + i] < 0 && ![vocabulary.eoi, vocabulary.eos, vocabulary.boi].contains(id) { return true }
            i += 1
        }
        return false
    }

    /// LM targets of a packed batch under Transfusion's loss mask (see the file comment): the next-token
    /// targets, with −1 at image positions and at every position whose successor is an image position.
    func diffusionTextTargets(_ batch: PackedBatch) -> [Int32] {
        var targets = batch.nextTokenTargets
        for i in targets.indices where batch.isImagePosition(i)
            || ((i + 1) % batch.length != 0 && batch.isImagePosition(i + 1)) {
            targets[i] = -1
        }
        return targets
    }

    /// One image's noise level and noising: the timestep for the patch codec (in training steps), the
    /// noised latents, the regression target, and whether it is noised at all (t = 0 only under a cap of 0).
    struct NoisedImage {
        let timestep: Float
        let latents: Tensor  // [C, h, w]
        let target: Tensor  // [C, h, w]
        let trained: Bool
    }

    func noise(_ clean: Tensor, limit: Int, schedule: NoiseSchedule, generator: inout RandomGenerator) -> NoisedImage {
        let epsilon = Tensor.randomNormal(clean.shape, std: 1, generator: &generator)
        let steps = config.diffusionSteps
        switch config.diffusionObjective {
        case .epsilon:
            let t = limit == 0 ? 0 : 1 + generator.nextInt(below: limit)  // uniform in 1...limit
            let (signal, noise) = schedule.signalAndNoise(t)
            return NoisedImage(timestep: Float(t), latents: clean * signal + epsilon * noise, target: epsilon, trained: t > 0)
        case .flow:
            let n = generator.normal()
            let t = Float(limit) / Float(steps) / (1 + Foundation.exp(-n))  // logit-normal, scaled by the cap
            return NoisedImage(timestep: t * Float(steps), latents: clean * (1 - t) + epsilon * t,
                               target: epsilon - clean, trained: limit > 0)
        }
    }

    /// Every latent image of the batch noised at its own level, in order (the captioning cap applied);
    /// nil for a pixel image (an understanding encoder's, trained on no loss of its own).
    func noiseImages(of batch: PackedBatch, schedule: NoiseSchedule, generator: inout RandomGenerator) -> [NoisedImage?] {
        batch.images.map { image in
            if image.readsPixels { return nil }
            guard case .latents(let clean) = image.content else {
                preconditionFailure("FusionModel: recipe '\(config.recipe)' trains on latent images, but the batch holds image codes")
            }
            let limit = capsNoiseForCaptioning(image, in: batch) ? config.captioningNoiseLimit : config.diffusionSteps
            return noise(clean, limit: limit, schedule: schedule, generator: &generator)
        }
    }

    /// Transfusion's loss of a packed batch; with `rows`, one rank's share of it. The noise of every
    /// image of the whole batch is drawn, in order, so that a share's images are noised as the whole
    /// batch's would be.
    func diffusionLoss(_ batch: PackedBatch, rows: Range<Int>, generator: inout RandomGenerator) -> RecipeLoss {
        guard let latentPatches else { preconditionFailure("FusionModel: the diffusion objective needs latent patches") }
        let schedule = NoiseSchedule(cosineSteps: config.diffusionSteps)  // ~1000 cosines: cheaper than a cache
        let allNoised = noiseImages(of: batch, schedule: schedule, generator: &generator)
        let allTrained = allNoised.compactMap { $0 }.filter(\.trained).count
        let allTargets = diffusionTextTargets(batch)
        let allTextCount = allTargets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }

        let local = batch.rows(rows)
        let noised = batch.imageIndices(inRows: rows).compactMap { allNoised[$0] }
        let (b, t, d) = (local.rows, local.length, config.model.width)
        let (inputs, encoded) = latentInputs(local, latents: noised.map(\.latents), timesteps: noised.map(\.timestep))
        let hidden = core.hiddenStates(inputs, positions: local.positions, masks: masks(for: local),
                                       context: crossAttentionContext(local), axes: positionAxes(local)).reshaped([b * t, d])

        // LM part: logits only at the rows that have a target.
        let targets = Array(allTargets[batch.flatIndices(ofRows: rows)])
        let textRows = targets.indices.filter { targets[$0] >= 0 }
        let text = LossShare(count: textRows.count, of: allTextCount)
        let textLoss = textRows.isEmpty ? Tensor(scalar: 0)
            : crossEntropy(core.logits(embedding(hidden, ids: textRows.map { Int32($0) })),
                           targets: textRows.map { targets[$0] }, zLoss: config.zLoss).scaled(by: text.weight)

        // Diffusion part: the core's outputs at the image positions, back in latent space.
        var imageLoss = Tensor(scalar: 0)
        var trainedPatches = 0
        let trained = noised.map(\.trained)
        let image = LossShare(count: trained.filter { $0 }.count, of: allTrained)
        if let encoded {
            let imageHidden = embedding(hidden, ids: imagePositionRows(local).map { Int32($0) })  // [I·P, D]
            let prediction = latentPatches.unembed(imageHidden, encoded)  // [I, C, h, w]
            let target = concatenate(noised.map { $0.target.reshaped([1] + $0.target.shape) }, axis: 0)
            if trained.allSatisfy({ $0 }) {
                imageLoss = meanSquaredError(prediction, target).scaled(by: image.weight)
            } else if trained.contains(true) {  // leave out images kept clean (a captioning cap of 0)
                let weights = Tensor(trained.map { $0 ? Float(1) : 0 }, shape: [trained.count, 1, 1, 1])
                let perImage = prediction.count / trained.count
                imageLoss = ((prediction - target) * weights).squared().sum() * (1 / Float(perImage * allTrained))
            }
            for (image, isTrained) in zip(local.images.filter { !$0.readsPixels }, trained) where isTrained { trainedPatches += image.count }
        }
        let total = textLoss + imageLoss * config.diffusionWeight
        return RecipeLoss(total: total, parts: [("text_loss", textLoss.item), ("image_loss", imageLoss.item)],
                          trainedPositions: textRows.count + trainedPatches)
    }
}

// Transfusion's image sampling (arXiv 2408.11039, §3.3 and §4.1): prompt BOS caption BOI, then denoise
// the image's latent patches from pure noise over N steps (the paper trains on 1000 and samples with
// 250), with classifier-free guidance (Ho & Salimans 2022):
//
//     ε̃ = (1 + s)·ε̂(x_t, caption) − s·ε̂(x_t, ∅)       (∅: the empty caption, "BOS BOI")
//
// Samplers (`DiffusionSamplerKind`):
//   - DDIM, η = 0 (Song et al. 2021, eq. 12), over an evenly spaced subsequence τ of 1...T
//     (`NoiseSchedule.samplingTimesteps`): x̂₀ = (x_τ − √(1−ᾱ_τ)·ε̃)/√ᾱ_τ,
//     x_τ' = √ᾱ_τ'·x̂₀ + √(1−ᾱ_τ')·ε̃  (τ' the next, smaller timestep; ᾱ = 1 after the last);
//   - DDPM ancestral (Ho et al. 2020, eq. 6–7, Algorithm 2) over the same τ, with the step's own
//     β' = 1 − ᾱ_τ/ᾱ_τ' ("respacing", Nichol & Dhariwal 2021 §4): x_τ' ~ N(μ̃(x_τ, x̂₀), β̃),
//     μ̃ = √ᾱ_τ'·β'/(1−ᾱ_τ)·x̂₀ + √(1−β')·(1−ᾱ_τ')/(1−ᾱ_τ)·x_τ,  β̃ = (1−ᾱ_τ')/(1−ᾱ_τ)·β'; no noise at the end;
//   - for the flow objective (x_t = (1−t)·x₀ + t·ε, velocity v = ε − x₀), the ODE dx/dt = v from t = 1
//     (noise) to 0 on N equal steps Δ = 1/N: Euler, x ← x − Δ·v̂(x, t), or the explicit midpoint rule
//     (2nd order, two evaluations per step): x_m = x − Δ/2·v̂(x, t), x ← x − Δ·v̂(x_m, t − Δ/2).
//
// The prompt is prefilled once into a key/value cache, conditional and unconditional rows in one batch;
// each denoising step then runs only the P image positions of every row, attending to the cached
// prompt and bidirectionally to each other, without committing them to the cache.
//
// Shape alphabet: N images asked for, R = N or 2N rows (with guidance), C channels, h×w grid, P patches, D width.
import Foundation

/// How images are denoised; the first two need the ε objective, the last two the flow objective.
public enum DiffusionSamplerKind: String, ConfigurationChoice, Sendable {
    case ddim, ddpm, euler, midpoint

    /// The objective whose prediction this sampler reads.
    public var objective: RecipeConfig.DiffusionObjective {
        switch self {
        case .ddim, .ddpm: return .epsilon
        case .euler, .midpoint: return .flow
        }
    }
}

extension FusionModel {
    /// Samples N image latents [N, C, h, w], one per caption (text ids; an empty caption samples
    /// unconditionally), with guidance scale s (0: no guidance, and no unconditional rows), by `sampler`
    /// over `steps` steps. All randomness comes from `generator`.
    ///
    /// Guidance reads the unconditional prediction from the prompt "BOS BOI", so the model must have been
    /// trained with captions dropped (`config.captionDropout`) as image-only documents
    /// (`Document([.image(...)])`, laid out BOS BOI image EOI EOS), which the document builder writes.
    public func sampleImageLatents(captions: [[Int32]], guidanceScale: Float, sampler: DiffusionSamplerKind = .ddim,
                                   steps: Int = 50, generator: inout RandomGenerator) throws -> Tensor {
        guard config.imageObjective == .diffusion, let latentPatches else {
            throw ConfigurationError("recipe '\(config.recipe)' makes image codes (imageObjective \(config.imageObjective.rawValue)), "
                + "not continuous latents; use sampleImageCodes, or a diffusion recipe such as transfusion for latents")
        }
        guard sampler.objective == config.diffusionObjective else {
            let fitting = DiffusionSamplerKind.allCases.filter { $0.objective == config.diffusionObjective }.map(\.rawValue)
            throw ConfigurationError("sampler \(sampler.rawValue) needs diffusionObjective \(sampler.objective.rawValue), but this model "
                + "was trained with \(config.diffusionObjective.rawValue); use \(fitting.joined(separator: " or "))")
        }
        guard (1...config.diffusionSteps).contains(steps) else {
            throw ConfigurationError("sampling steps must lie in 1...\(config.diffusionSteps) (diffusionSteps), got \(steps)")
        }
        guard !captions.isEmpty else { throw ConfigurationError("sampleImageLatents: no captions given; pass one (possibly empty) caption per image") }
        guard guidanceScale.isFinite else { throw ConfigurationError("guidanceScale must be finite, got \(guidanceScale)") }
        for caption in captions {
            if let bad = caption.first(where: { $0 < 0 || Int($0) >= vocabulary.textSize }) {
                throw ConfigurationError("caption id \(bad) is not a text id (0..<\(vocabulary.textSize)); captions are tokenizer ids")
            }
        }

        // Guided prediction (1 + s)·conditional − s·unconditional: s is w − 1 in the u + w·(c − u)
        // convention of the Transfusion and Imagen papers (see `guidedLogit`).
        let n = captions.count, guided = guidanceScale != 0, s = guidanceScale
        let (c, g, p, d) = (config.latentChannels, config.imageGrid, latentPatches.patchesPerImage, config.model.width)
        // Rows 0..<N: BOS caption BOI; rows N..<2N (with guidance): BOS BOI.
        let prompts = captions.map { Document([.text($0 + [vocabulary.boi])]) }
            + (guided ? Array(repeating: Document([.text([vocabulary.boi])]), count: n) : [])
        let packed = try packPrompts(prompts)
        let documentLength = packed.length + p + 2  // … BOI, P patches, EOI, EOS: what training saw
        guard documentLength <= config.model.contextLength else {
            throw SequenceLengthError(documentLength: documentLength, contextLength: config.model.contextLength)
        }
        let rows = prompts.count, length = packed.length

        return withoutGradients {
            let cache = KVCache(config: config.model, batch: rows, capacity: length + p)
            _ = prefill(packed, cache: cache)
            // RoPE positions of each row's patches: right after its BOI (rows are left-padded).
            var positions: [Int32] = []
            for row in 0..<rows {
                let boi = packed.positions[row * length + length - 1]
                positions += (1...p).map { boi + Int32($0) }
            }
            let axes = generationAxes(starts: (0..<rows).map { positions[$0 * p] }, tokens: 0..<p)
            func predict(_ x: Tensor, _ timestep: Float) -> Tensor {  // x [N, C, h, w] → ε̃ or ṽ [N, C, h, w]
                let input = guided ? concatenate([x, x], axis: 0) : x  // [R, C, h, w]
                let encoded = latentPatches.embed(input, timesteps: Array(repeating: timestep, count: rows))
                let hidden = core.hiddenStates(encoded.patches.reshaped([rows, p, d]), positions: positions, cache: cache,
                                               newTokens: .bidirectional, commit: false, axes: axes)  // [R, P, D]
                let out = latentPatches.unembed(hidden.reshaped([rows * p, d]), encoded)  // [R, C, h, w]
                guard guided else { return out }
                return out.narrow(axis: 0, start: 0, length: n) * (1 + s) - out.narrow(axis: 0, start: n, length: n) * s
            }
            let noise = Tensor.randomNormal([n, c, g, g], std: 1, generator: &generator)
            return DiffusionSolver.solve(sampler, from: noise, steps: steps, schedule: NoiseSchedule(cosineSteps: config.diffusionSteps),
                                         generator: &generator, predict: predict)
        }
    }
}

/// The samplers' update rules, apart from the model: `predict(x, t)` returns ε̂ (DDIM, DDPM) or v̂
/// (Euler, midpoint) for x at timestep t in training steps (the flow time t·T). Tests drive it with
/// oracle predictions.
enum DiffusionSolver {
    static func solve(_ kind: DiffusionSamplerKind, from noise: Tensor, steps: Int, schedule: NoiseSchedule,
                      generator: inout RandomGenerator, predict: (Tensor, Float) -> Tensor) -> Tensor {
        var x = noise
        switch kind {
        case .ddim, .ddpm:
            let timesteps = schedule.samplingTimesteps(count: steps)
            for (i, t) in timesteps.enumerated() {
                let previous = i + 1 < timesteps.count ? timesteps[i + 1] : 0
                let (at, ap) = (schedule.alphaBar(t), schedule.alphaBar(previous))
                let epsilon = predict(x, Float(t))
                let x0 = (x - epsilon * Float((1 - at).squareRoot())) * Float(1 / at.squareRoot())
                if kind == .ddim {
                    x = x0 * Float(ap.squareRoot()) + epsilon * Float((1 - ap).squareRoot())
                } else {
                    let beta = 1 - at / ap
                    let mean = x0 * Float(ap.squareRoot() * beta / (1 - at)) + x * Float((1 - beta).squareRoot() * (1 - ap) / (1 - at))
                    if previous == 0 {
                        x = mean
                    } else {
                        let variance = (1 - ap) / (1 - at) * beta
                        x = mean + Tensor.randomNormal(x.shape, std: Float(variance.squareRoot()), generator: &generator)
                    }
                }
            }
        case .euler, .midpoint:
            let scale = Float(schedule.steps), dt = 1 / Float(steps)
            for i in stride(from: steps, to: 0, by: -1) {
                let t = Float(i) / Float(steps)
                if kind == .euler {
                    x = x - predict(x, t * scale) * dt
                } else {
                    let middle = x - predict(x, t * scale) * (dt / 2)
                    x = x - predict(middle, (t - dt / 2) * scale) * dt
                }
            }
        }
        return x
    }
}

// Chameleon's image sampling (arXiv 2405.09818, §2.1 and §4 "image generation"): after BOI the model
// writes the image's h·w codes one at a time, logits restricted to the image codes, exactly one block
// (EOI is forced after the last code, so it is never sampled), with classifier-free guidance (Gafni
// et al. 2022, Make-A-Scene §3.3, as Chameleon uses it): the conditional and the unconditional
// (empty-caption) prompts run as rows of one batch and each code is drawn from
// (1 + s)·conditional − s·unconditional logits; both rows then read the chosen code.
//
// Also the entry point `sampleImageCodes`, which sends each code recipe to its sampler, and the
// cached-decoding helpers the caption sampler shares.
//
// Shape alphabet: n prompts, R = n (or 2n with guidance) rows, Tp prompt length, D width, V vocabulary,
// K image codes.

extension FusionModel {
    /// Image codes (h·w per caption, row-major, each in 0..<K) generated for each caption, by the
    /// recipe's sampler: autoregressive for `.nextToken` (Chameleon), MaskGIT over `steps` steps for
    /// `.maskedTokens` (Show-o; `confidenceTemperature` is the Gumbel noise on its confidences at the
    /// first step, annealed to 0; `steps` is unused by the autoregressive sampler). `guidanceScale` s = 0
    /// turns classifier-free guidance off. Throws for a recipe with continuous images, for invalid
    /// options, and when prompt and image do not fit the context.
    public func sampleImageCodes(captions: [[Int32]], guidanceScale: Float, options: TokenSamplingOptions,
                                 steps: Int = 12, confidenceTemperature: Float = 4.5,
                                 generator: inout RandomGenerator) throws -> [[Int32]] {
        try options.validate()
        switch config.imageObjective {
        case .nextToken:
            return try sampleCodesAutoregressively(captions: captions, guidanceScale: guidanceScale,
                                                   options: options, generator: &generator)
        case .maskedTokens:
            return try sampleCodesByMaskedDecoding(captions: captions, guidanceScale: guidanceScale, options: options,
                                                   steps: steps, confidenceTemperature: confidenceTemperature,
                                                   generator: &generator)
        case .diffusion:
            throw ConfigurationError("recipe '\(config.recipe)' (imageObjective diffusion) generates continuous latents, not image codes: sample it with sampleImageLatents, or pick a code recipe (chameleon: nextToken, showo: maskedTokens)")
        }
    }

    func sampleCodesAutoregressively(captions: [[Int32]], guidanceScale: Float, options: TokenSamplingOptions,
                                     generator: inout RandomGenerator) throws -> [[Int32]] {
        guard !captions.isEmpty else { return [] }
        let start = try startImageSampling(captions: captions, guided: guidanceScale != 0)
        let (n, rows, codes) = (captions.count, start.rows, config.imagePositions)
        let (d, k) = (config.model.width, vocabulary.imageCodeRange.count)
        return withoutGradients {
            // Logits of the K image codes only: a drawn index is the code itself.
            var sampler = TokenSampler(options: options, allowed: 0..<Int32(k), vocabularySize: k)
            var generated = [[Int32]](repeating: [], count: n)
            for r in 0..<n { generated[r].reserveCapacity(codes) }
            var next = [Int32](repeating: 0, count: rows)  // [R]: the id each row reads next
            var positions = start.positions
            var hidden = start.lastHidden  // [R, D]
            for step in 0..<codes {
                let logits = core.logits(hidden, ids: vocabulary.imageCodeRange)  // [R, K]
                let chosen = rows > n ? guidedLogits(conditional: logits.narrow(axis: 0, start: 0, length: n),
                                                     unconditional: logits.narrow(axis: 0, start: n, length: n),
                                                     scale: guidanceScale) : logits  // [n, K]
                withExtendedLifetime(chosen) {
                    for r in 0..<n {
                        let code = sampler.sample(logits: chosen.data + r * k, history: generated[r][...], generator: &generator).id
                        generated[r].append(code)
                        let id = code + vocabulary.imageCodeOffset
                        next[r] = id
                        if rows > n { next[n + r] = id }
                    }
                }
                if step == codes - 1 { break }  // EOI follows, forced: nothing more to run
                hidden = core.hiddenStates(core.embed(next).reshaped([rows, 1, d]), positions: positions, cache: start.cache,
                                           axes: generationAxes(starts: start.positions, tokens: step..<(step + 1))).reshaped([rows, d])
                for r in 0..<rows { positions[r] += 1 }
            }
            return generated
        }
    }
}

// MARK: Cached decoding, shared by the samplers

/// A prefilled key/value cache and where each row continues.
struct PrefilledPrompts {
    let rows: Int
    let cache: KVCache
    /// Final hidden state [R, D] of each row's last prompt position (it predicts what follows).
    let lastHidden: Tensor
    /// [R] RoPE position of each row's next position (prompts differ in length; padding is on the left).
    let positions: [Int32]
    /// Prompt length Tp (with padding): the cache's first Tp entries.
    let length: Int
    /// The prompts' pixel images as the cross-attention layers read them, and how many features each
    /// row has: what every position decoded after the prompt sees (nil without cross-attention).
    var context: CrossAttentionContext? = nil
    var contextKeys: [Int] = []
}

extension FusionModel {
    /// Packs `prompts` one per row, checks that `continuation` more positions fit the context, and
    /// prefills a cache with room for them.
    func prefillPrompts(_ prompts: [Document], continuation: Int) throws -> PrefilledPrompts {
        let packed = try packPrompts(prompts)
        let (rows, length, d) = (packed.rows, packed.length, config.model.width)
        guard length + continuation <= config.model.contextLength else {
            throw SequenceLengthError(documentLength: length + continuation, contextLength: config.model.contextLength)
        }
        let cache = KVCache(config: config.model, batch: rows, capacity: length + continuation)
        let context = withoutGradients { crossAttentionContext(packed) }
        let hidden = prefill(packed, cache: cache, context: context)  // [R, Tp, D]
        let last = withoutGradients { hidden.narrow(axis: 1, start: length - 1, length: 1).reshaped([rows, d]) }
        let positions = (0..<rows).map { packed.positions[$0 * length + length - 1] + 1 }
        return PrefilledPrompts(rows: rows, cache: cache, lastHidden: last, positions: positions, length: length,
                                context: context, contextKeys: context == nil ? [] : crossAttentionKeys(packed))
    }

    /// Prefills the image prompts (caption, then BOI), conditional rows first and, when `guided`, one
    /// unconditional (empty-caption) row per caption after them. The image and its EOI must fit the context.
    func startImageSampling(captions: [[Int32]], guided: Bool) throws -> PrefilledPrompts {
        let conditional = captions.map { imagePrompt(caption: $0) }
        let unconditional = guided ? Array(repeating: imagePrompt(caption: []), count: captions.count) : []
        return try prefillPrompts(conditional + unconditional, continuation: config.imagePositions + 1)
    }
}

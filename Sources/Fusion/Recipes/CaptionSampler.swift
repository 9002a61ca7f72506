// Understanding, the same for all three recipes (Chameleon §4 "image-to-text", Show-o §3.3 "MMU",
// Transfusion §4.3 "captioning"): the image goes into the prompt (`understandingPrompt`: codes for the
// discrete recipes, clean latents at timestep 0 for Transfusion, through `inputEmbeddings`), and the
// caption is decoded autoregressively with the key/value cache, one position per step, the logits
// restricted to text ids (no special id but EOS), until EOS or `maxTokens`. Greedy or sampled, with
// top-k/top-p and a repetition penalty (`TokenSampling.swift`).
//
// `captionLogLikelihood` scores a caption instead: log p(caption, EOS | image) under the model's full
// distribution (every id in the vocabulary competes), from one forward pass.
//
// Shape alphabet: R images (rows), T length, D width, V vocabulary.

extension FusionModel {
    /// The text ids a caption may contain: every text id except the special ones, plus EOS (which ends it).
    public var captionIDs: [Int32] {
        let specials = Set(vocabulary.specialIDs)
        return (0..<Int32(vocabulary.textSize)).filter { !specials.contains($0) || $0 == vocabulary.eos }
    }

    /// A caption for each image (text ids, without EOS), at most `maxTokens` long. Throws when the
    /// prompt plus `maxTokens` does not fit the context.
    public func caption(images: [ImageContent], maxTokens: Int, options: TokenSamplingOptions,
                        generator: inout RandomGenerator) throws -> [[Int32]] {
        try continueText(images.map { understandingPrompt(image: $0) }, maxTokens: maxTokens, options: options, generator: &generator)
    }

    /// The text that follows each open prompt (an understanding, question or few-shot prompt), decoded
    /// as a caption is: text ids only, until EOS or `maxTokens`.
    public func continueText(_ prompts: [Document], maxTokens: Int, options: TokenSamplingOptions,
                             generator: inout RandomGenerator) throws -> [[Int32]] {
        try options.validate()
        guard !prompts.isEmpty, maxTokens > 0 else { return prompts.map { _ in [] } }
        let start = try prefillPrompts(prompts, continuation: maxTokens)
        let (rows, d, v, eos) = (start.rows, config.model.width, vocabulary.size, vocabulary.eos)
        return withoutGradients {
            var sampler = TokenSampler(options: options, allowed: captionIDs, vocabularySize: v)
            var captions = [[Int32]](repeating: [], count: rows)
            var finished = [Bool](repeating: false, count: rows)
            var next = [Int32](repeating: eos, count: rows)  // [R]; finished rows keep reading EOS, unused
            var positions = start.positions
            var hidden = start.lastHidden  // [R, D]
            for step in 0..<maxTokens {
                let logits = core.logits(hidden)  // [R, V]
                withExtendedLifetime(logits) {
                    for r in 0..<rows where !finished[r] {
                        let id = sampler.sample(logits: logits.data + r * v, history: captions[r][...], generator: &generator).id
                        next[r] = id
                        if id == eos { finished[r] = true } else { captions[r].append(id) }
                    }
                }
                if step == maxTokens - 1 || !finished.contains(false) { break }
                hidden = core.hiddenStates(core.embed(next).reshaped([rows, 1, d]), positions: positions,
                                           cache: start.cache, context: start.context?.forNewPositions(1, keys: start.contextKeys))
                    .reshaped([rows, d])
                for r in 0..<rows { positions[r] += 1 }
            }
            return captions
        }
    }

    /// log p(caption ids, then EOS | image): the sum of their log-probabilities in the understanding
    /// document, from one forward pass. Throws when the document does not fit the context.
    public func captionLogLikelihood(image: ImageContent, caption: [Int32]) throws -> Float {
        let document = understandingDocument(image: image, caption: caption)
        let length = layout.length(of: document)
        guard length <= config.model.contextLength else {
            throw SequenceLengthError(documentLength: length, contextLength: config.model.contextLength)
        }
        let batch = try layout.pack([document], length: length)
        let image = batch.images[0], d = config.model.width, v = vocabulary.size
        // Positions EOI … (last caption id) predict caption ids 1…, then EOS.
        let first = image.start + image.count, predicted = length - 1 - first  // caption + EOS
        return withoutGradients {
            let hidden = core.hiddenStates(inputEmbeddings(batch), positions: batch.positions, masks: masks(for: batch),
                                           context: crossAttentionContext(batch), axes: positionAxes(batch))
            let logProbabilities = core.logits(hidden.reshaped([length, d]).narrow(axis: 0, start: first, length: predicted))
                .logSoftmax()  // [caption + 1, V]
            var total: Float = 0
            withExtendedLifetime(logProbabilities) {
                for k in 0..<predicted { total += logProbabilities.data[k * v + Int(batch.ids[first + 1 + k])] }
            }
            return total
        }
    }
}

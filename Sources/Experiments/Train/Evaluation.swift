// The evaluation of a run, on fixed evaluation sets (the first items of each held-out set, so every
// run of every recipe is scored on the same ones): text_ppl on the held-out plays; images generated
// from test captions, scored by the reference classifier (fd_fmnist, kid_fmnist, t2i_accuracy, with
// N recorded); captions generated for test images (caption_accuracy); templated questions answered
// (qa_accuracy) and classes named after K examples in context (fewshot_accuracy_kK). Names as in DESIGN.md.
import Foundation
import Fusion

struct Evaluation {
    let model: FusionModel
    let data: MultimodalData
    let config: ExperimentConfig
    let progress: Progress
    let metrics: ImageMetrics
    /// Where the evaluation's time goes (its parts' phases).
    var times = PhaseTimes()
    /// The classifier's outputs on the real test images, computed once and shared by every guidance scale.
    private let realOutputs = RealImageOutputs()

    /// The metrics of one evaluation: text_ppl, the image metrics at eval.guidance_scale, caption_accuracy,
    /// qa_accuracy and the few-shot scores.
    /// The image metrics at every scale of eval.guidance_scales are appended to `log` under
    /// eval_guidance/ (one row per scale, ascending, sharing the evaluation's step).
    ///
    /// In a data-parallel run the parts (the perplexity, each guidance scale's images, the captions) are
    /// shared out over the ranks and gathered on rank 0, which alone writes (`log` is nil elsewhere) and
    /// returns the metrics. Each part draws from its own stream, so every rank computes a part exactly
    /// as one process would.
    func run(step: Int, log: RunLog?, samplesPath: String, communicator: Communicator = .world) throws -> [(String, Double)] {
        let parts = EvaluationPart.all(config.eval)
        let owners = EvaluationPart.owners(of: parts, ranks: communicator.size)
        var mine: [Int: EvaluationPart.Result] = [:]
        for index in parts.indices where owners[index] == communicator.rank { mine[index] = try compute(parts[index]) }
        let results: [Int: EvaluationPart.Result]
        if communicator.size == 1 {
            results = mine
        } else {
            let gathered = communicator.gatherToRoot(try EvaluationPart.encode(mine))
            guard communicator.isRoot else { return [] }
            results = try gathered.reduce(into: [:]) { all, bytes in all.merge(try EvaluationPart.decode(bytes)) { a, _ in a } }
        }
        guard let log else { return [] }
        var values: [(String, Double)] = []
        for (index, part) in parts.enumerated() {
            guard let result = results[index] else { throw RunFailure(description: "evaluation: no rank returned the part \(part)") }
            switch part {
            case .textPerplexity, .captions, .questions, .fewShot: values += result.values
            case .images(let scale):
                try log.append("eval_guidance", step: step, [("guidance_scale", Double(scale))] + result.values)
                guard scale == config.eval.guidanceScale, let samples = result.samples else { continue }
                values += result.values
                let prompts = (0..<samples.shape[0]).map { data.captionText(data.test, index: $0, variant: 0) }
                try PNG.writeGrid(samples, columns: 10, scale: 3, labels: prompts, to: samplesPath, overwrite: true)
                try log.appendSamples(step: step, images: samples, labels: data.test.labels.map { Array($0.prefix(samples.shape[0])) }, prompts: prompts)
            }
        }
        return values  // text_ppl, the image metrics at eval.guidance_scale, then the understanding scores: the parts' order
    }

    /// One part of the evaluation: its metrics, and for the images at eval.guidance_scale the samples shown.
    func compute(_ part: EvaluationPart) throws -> EvaluationPart.Result {
        switch part {
        case .textPerplexity: return EvaluationPart.Result(values: [("text_ppl", times.measure("eval_perplexity") { textPerplexity() })])
        case .captions:
            guard coverage.scoresCaptions else { return EvaluationPart.Result(values: []) }
            return EvaluationPart.Result(values: [("caption_accuracy", try times.measure("eval_understanding") { try captionAccuracy() })])
        case .questions:
            guard coverage.scoresCaptions else { return EvaluationPart.Result(values: []) }
            return EvaluationPart.Result(values: try times.measure("eval_understanding") { try questionAccuracy() })
        case .fewShot(let k):
            guard coverage.scoresCaptions else { return EvaluationPart.Result(values: []) }
            return EvaluationPart.Result(values: try times.measure("eval_understanding") { try fewShotAccuracy(examples: k) })
        case .images(let scale):
            let n = min(config.eval.images, data.test.count)
            let images = try generateImages(count: n, guidanceScale: scale)
            var row: [(String, Double)] = []
            try times.measure("eval_image_metrics") {
                var generated: ReferenceOutputs? = nil  // the classifier reads each image once for all three metrics
                if coverage.readsImages {
                    let reference = try realOutputs.first(n, of: data.test.images, metrics: self.metrics)
                    let outputs = try self.metrics.outputs(images)
                    generated = outputs
                    row += try self.metrics.frechetDistance(generated: outputs, real: reference).logRow
                    // KID over 100 random half-size subsets (Bińkowski et al. 2018 §4 use subsets of 1,000): with the
                    // subset as large as the set, every subset would be the same and the spread would say nothing.
                    row += try self.metrics.kernelDistance(generated: outputs, real: reference,
                                                      kid: KernelInceptionDistance(subsetSize: min(n / 2, 1000), subsetCount: 100, seed: config.seed)).logRow
                }
                if coverage.readsLabels, let labels = data.test.labels {
                    row += try self.metrics.t2iAccuracy(outputs: generated ?? self.metrics.outputs(images), promptedLabels: Array(labels.prefix(n))).logRow
                }
            }
            let shown = scale == config.eval.guidanceScale ? images.narrow(axis: 0, start: 0, length: min(n, 20)) : nil
            return EvaluationPart.Result(values: row, samples: shown)
        }
    }

    /// The reference classifier's outputs on the first N images of a set, kept for the evaluation's other parts.
    final class RealImageOutputs {
        private var outputs: [Int: ReferenceOutputs] = [:]

        func first(_ n: Int, of images: Tensor, metrics: ImageMetrics) throws -> ReferenceOutputs {
            if let known = outputs[n] { return known }
            let computed = try metrics.outputs(images.narrow(axis: 0, start: 0, length: n))
            outputs[n] = computed
            return computed
        }
    }

    /// Which image and caption metrics this data and reference classifier allow.
    var coverage: MetricCoverage { MetricCoverage(metrics: metrics, data: data) }

    /// Perplexity of the held-out plays: exp of the mean next-token cross-entropy over the first
    /// `eval.textTokens` tokens, cut into documents that fill a context each. The cross-entropy alone:
    /// not the training loss, which adds the z-loss for Chameleon (its §2.3) and a recipe's other terms.
    func textPerplexity() -> Double {
        let length = model.config.model.contextLength, chunk = length - 2
        let tokens = Array(data.heldOutText.prefix(config.eval.textTokens))
        var documents: [Document] = []
        for start in stride(from: 0, to: tokens.count, by: chunk) {
            documents.append(model.textDocument(Array(tokens[start..<min(start + chunk, tokens.count)])))
        }
        var total = 0.0, count = 0
        let rows = config.train.batchSize
        for start in stride(from: 0, to: documents.count, by: rows) {
            let batch = try! model.layout.pack(Array(documents[start..<min(start + rows, documents.count)]), length: length)
            let crossEntropy = model.textCrossEntropy(batch)
            total += crossEntropy.sum
            count += crossEntropy.count
        }
        return Foundation.exp(total / Double(max(count, 1)))
    }

    /// N images generated from the captions of the first N test images (variant 0), decoded to pixels.
    /// Every scale draws from the same random stream, so the scales differ in guidance alone.
    func generateImages(count n: Int, guidanceScale: Float) throws -> Tensor {
        var generator = RandomGenerator(seed: config.seed).split(key: "evaluation")
        var chunks: [Tensor] = []
        let chunk = 25
        for start in stride(from: 0, to: n, by: chunk) {
            let count = min(chunk, n - start)
            let captions = (start..<(start + count)).map { data.tokenizer.encode(data.captionText(data.test, index: $0, variant: 0)) }
            if model.config.imageObjective.usesCodes {
                var options = TokenSamplingOptions()
                options.temperature = config.eval.temperature
                options.topK = config.eval.topK > 0 ? config.eval.topK : nil
                let codes = try times.measure("eval_sampling") {
                    try model.sampleImageCodes(captions: captions, guidanceScale: guidanceScale, options: options,
                                               steps: config.eval.maskgitSteps, generator: &generator)
                }
                chunks.append(times.measure("eval_decoding") { withoutGradients { data.autoencoder.decodeCodes(codes) } })
            } else {
                let latents = try times.measure("eval_sampling") {
                    try model.sampleImageLatents(captions: captions, guidanceScale: guidanceScale,
                                                 sampler: config.eval.diffusionSampler, steps: config.eval.denoisingSteps,
                                                 generator: &generator)
                }
                chunks.append(times.measure("eval_decoding") { withoutGradients { data.autoencoder.decodeLatents(latents) } })
            }
            progress.evaluating("images at guidance \(guidanceScale)", done: start + count, of: n)
        }
        // Decoders are not bounded; the classifier (and a PNG) read pixels in [0, 1].
        let images = concatenate(chunks, axis: 0)
        for i in 0..<images.count { images.data[i] = min(max(images.data[i], 0), 1) }
        return images
    }

    /// Greedy continuations of `prompts`, decoded, in chunks of 25 (text ids only, at most `maxTokens`).
    func continuations(_ prompts: [Document], maxTokens: Int, generator: inout RandomGenerator, label: String) throws -> [String] {
        var options = TokenSamplingOptions()
        options.temperature = 0
        var texts: [String] = []
        for start in stride(from: 0, to: prompts.count, by: 25) {
            let chunk = Array(prompts[start..<min(start + 25, prompts.count)])
            texts += try model.continueText(chunk, maxTokens: maxTokens, options: options, generator: &generator).map { data.tokenizer.decode($0) }
            progress.evaluating(label, done: texts.count, of: prompts.count)
        }
        return texts
    }

    /// qa_accuracy: the share of the templated questions about the first M test images (ImageQuestions)
    /// whose greedy answer is exactly right, with N, the number of questions; qa_class_accuracy: the same
    /// over the class questions alone ("what is it?"), since a two-way attribute question is answered
    /// right half the time without reading the image.
    func questionAccuracy() throws -> [(String, Double)] {
        let m = min(config.eval.captions, data.test.count)
        let asked = (0..<m).flatMap { index in data.questions(data.test, index: index).map { (index, $0) } }
        guard !asked.isEmpty else { return [] }
        let prompts = asked.map { index, question in
            model.questionPrompt(image: data.understandingContent(data.test, index: index, model: model),
                                 question: data.tokenizer.encode(question.text))
        }
        var generator = RandomGenerator(seed: config.seed).split(key: "questions")
        let answers = try continuations(prompts, maxTokens: 4, generator: &generator, label: "questions")
        let right = zip(asked, answers).map { $0.0.1.accepts($0.1) }
        let correct = right.filter { $0 }.count
        let classRight = zip(asked, right).filter { $0.0.1.asksForClass }.map(\.1)
        var result = [("qa_accuracy", Double(correct) / Double(asked.count)), ("qa_accuracy_n", Double(asked.count))]
        if !classRight.isEmpty {
            result += [("qa_class_accuracy", Double(classRight.filter { $0 }.count) / Double(classRight.count)),
                       ("qa_class_accuracy_n", Double(classRight.count))]
        }
        return result
    }

    /// fewshot_accuracy_kK (Flamingo's in-context classification, Alayrac et al. 2022, §3.1): each of the
    /// first M test images follows K labelled training images (drawn per query from a fixed stream), each
    /// image followed by "a photo of a NOUN", the query by "a photo of", and the greedy continuation (at most
    /// eval.caption_tokens) must name its class first; with N = M. K = 0 is the zero-shot prompt.
    /// Not computed when the prompts do not fit the context (the images' positions: none under cross-attention).
    func fewShotAccuracy(examples k: Int) throws -> [(String, Double)] {
        let m = min(config.eval.captions, data.test.count), maxTokens = config.eval.captionTokens
        let cue = "a photo of"  // one of the captions' phrasings (Captions.swift): the model knows how it goes on
        guard let trainLabels = data.train.labels, let testLabels = data.test.labels, data.train.count > 0 else { return [] }
        var draws = RandomGenerator(seed: config.seed).split(key: "fewshot").stream(k)
        let prompts = (0..<m).map { query -> Document in
            let examples = (0..<k).map { _ -> (image: ImageContent, text: [Int32]) in
                let index = draws.nextInt(below: data.train.count)
                return (data.understandingContent(data.train, index: index, model: model),
                        data.tokenizer.encode("\(cue) \(Captions.withArticle(data.labelText(Int(trainLabels[index]))))"))
            }
            return model.fewShotPrompt(examples: examples, query: data.understandingContent(data.test, index: query, model: model),
                                       cue: data.tokenizer.encode(cue))
        }
        let longest = prompts.map { model.layout.length(of: $0, closed: false) }.max() ?? 0
        guard longest + maxTokens <= model.config.model.contextLength else {
            progress.say("fewshot_accuracy_k\(k): not computed (a prompt of \(k) examples and the query takes \(longest) positions, "
                         + "with \(maxTokens) to answer more than the context of \(model.config.model.contextLength))")
            return []
        }
        var generator = RandomGenerator(seed: config.seed).split(key: "fewshot-answers")
        let answers = try continuations(prompts, maxTokens: maxTokens, generator: &generator, label: "\(k)-shot")
        let correct = answers.indices.filter { data.firstClassName(in: answers[$0]) == Int(testLabels[$0]) }.count
        return [("fewshot_accuracy_k\(k)", Double(correct) / Double(m)), ("fewshot_accuracy_k\(k)_n", Double(m))]
    }

    /// Share of the first M test images whose greedy caption names their class (data.classNames).
    func captionAccuracy() throws -> Double {
        let m = min(config.eval.captions, data.test.count)
        var generator = RandomGenerator(seed: config.seed).split(key: "captions")
        var correct = 0
        let chunk = 25
        for start in stride(from: 0, to: m, by: chunk) {
            let count = min(chunk, m - start)
            let images = (start..<(start + count)).map { data.understandingContent(data.test, index: $0, model: model) }
            var options = TokenSamplingOptions()
            options.temperature = 0
            let captions = try model.caption(images: images, maxTokens: config.eval.captionTokens, options: options, generator: &generator)
            let labels = data.test.labels!  // scoresCaptions: there are labels
            for (i, ids) in captions.enumerated() where data.className(in: data.tokenizer.decode(ids)) == Int(labels[start + i]) {
                correct += 1
            }
            progress.evaluating("captions", done: start + count, of: m)
        }
        return Double(correct) / Double(m)
    }
}

// The training documents of each step, a pure function of (seed, step): image–caption pairs, caption
// first (generation) or image first (understanding), mixed with text-only documents at a token ratio,
// packed into B sequences of T positions (DESIGN.md, "Data"). Being a function of the step is what
// makes a resumed run see exactly the data the uninterrupted run saw.
import Fusion

struct DocumentStream {
    let data: MultimodalData
    let model: FusionModel
    let config: ExperimentConfig
    let generator: RandomGenerator

    init(data: MultimodalData, model: FusionModel, config: ExperimentConfig) {
        self.data = data
        self.model = model
        self.config = config
        generator = RandomGenerator(seed: config.seed).split(key: "data")
    }

    /// Documents that fill `rows` sequences of `length` positions exactly (text documents fill the ends).
    func documents(step: Int) -> [Document] {
        var g = generator.stream(step)
        let rows = config.train.batchSize, length = config.recipe.model.contextLength
        let layout = model.layout
        var documents: [Document] = []
        var row = 0, used = 0, textTokens = 0, allTokens = 0
        let minimumText = 8
        while row < rows {
            let room = length - used
            let wantText = Float(textTokens) < config.data.textShare * Float(max(allTokens, 1)) || data.train.count == 0
            var document: Document? = nil
            if !wantText {
                let index = Int(g.nextFloat() * Float(data.train.count)) % data.train.count
                let caption = data.tokenizer.encode(data.captionText(data.train, index: index, variant: Int(g.nextFloat() * 1_000_000)))
                if g.nextFloat() < config.data.imageFirstShare {
                    let image = data.understandingContent(data.train, index: index, model: model)
                    // A question instead of the caption (drawn only when data.qa_share > 0, so that other
                    // runs draw exactly what they drew before).
                    let questions = config.data.qaShare > 0 ? data.questions(data.train, index: index) : []
                    if !questions.isEmpty && g.nextFloat() < config.data.qaShare {
                        let question = questions[g.nextInt(below: questions.count)]
                        document = model.questionDocument(image: image, question: data.tokenizer.encode(question.text),
                                                          answer: data.tokenizer.encode(" " + question.answers[0]))
                    } else {
                        document = model.understandingDocument(image: image, caption: caption)
                    }
                } else {
                    document = model.generationDocument(caption: caption, image: data.content(data.train, index: index),
                                                        dropCaption: model.drawCaptionDropout(generator: &g))
                }
                let n = layout.length(of: document!)
                if n > room {
                    if room >= minimumText + 2 { document = nil }  // fill this row's end with text instead
                    else { row += 1; used = 0; continue }
                }
            }
            if document == nil {
                guard room >= minimumText + 2 else { row += 1; used = 0; continue }
                let count = room - 2  // BOS and EOS
                let start = Int(g.nextFloat() * Float(max(data.trainText.count - count, 1)))
                document = model.textDocument(Array(data.trainText[start..<min(start + count, data.trainText.count)]))
                textTokens += count
            }
            let n = layout.length(of: document!)
            documents.append(document!)
            used += n
            allTokens += n
            if used >= length { row += 1; used = 0 }
        }
        return documents
    }
}

// How a recipe writes its training documents and its sampling prompts, in one place so that the data
// pipeline and the samplers agree on the format (DESIGN.md, "Data": caption-first documents teach
// generation, image-first ones understanding, text-only ones the language model).
//
// With the layout of `Document` (BOS … EOS, images as BOI codes/patches EOI):
//   generation     BOS [T2I] caption BOI image EOI EOS       (Show-o §3.1 puts the task token first)
//   understanding  BOS [MMU] BOI image EOI caption EOS
//   question       BOS [MMU] BOI image EOI question answer EOS   (every text id trained, the question too)
//   few-shot       BOS [MMU] BOI image₁ EOI text₁ … BOI imageₖ EOI textₖ BOI query EOI cue   (a prompt only:
//                  Flamingo's in-context classification, Alayrac et al. 2022, §3.1)
//   text           BOS text EOS
// The task tokens are written only when `config.taskTokens` (the Show-o preset). Prompts are the same
// documents left open: `generationPrompt` stops after the caption (the image samplers write BOI
// themselves), `understandingPrompt` after EOI (the caption sampler continues with the first word).
//
// Classifier-free guidance (Ho & Salimans 2022, §3.2): in training a generation document drops its
// caption with probability `config.captionDropout`, leaving `BOS [T2I] BOI image EOI EOS`; the
// unconditional prompt at sampling time is that same document with an empty caption.

extension FusionModel {
    private var generationTaskTokens: [Int32] { config.taskTokens ? [vocabulary.t2i] : [] }
    private var understandingTaskTokens: [Int32] { config.taskTokens ? [vocabulary.mmu] : [] }

    /// A caption → image document (teaches generation); `dropCaption` leaves the caption out (the
    /// unconditional case of classifier-free guidance, see `drawCaptionDropout`).
    public func generationDocument(caption: [Int32], image: ImageContent, dropCaption: Bool = false) -> Document {
        Document([.text(generationTaskTokens + (dropCaption ? [] : caption)), .image(image)])
    }

    /// An image → caption document (teaches understanding).
    public func understandingDocument(image: ImageContent, caption: [Int32]) -> Document {
        Document([.text(understandingTaskTokens), .image(image), .text(caption)])
    }

    /// An image → question and answer document (teaches answering).
    public func questionDocument(image: ImageContent, question: [Int32], answer: [Int32]) -> Document {
        Document([.text(understandingTaskTokens), .image(image), .text(question + answer)])
    }

    /// The open prompt for answering `question` about `image`: the question document before its answer.
    public func questionPrompt(image: ImageContent, question: [Int32]) -> Document {
        Document([.text(understandingTaskTokens), .image(image), .text(question)])
    }

    /// The open prompt for classifying `query` from k labelled examples in context, each image followed by
    /// its text ("a photo of a coat"), the query by the start of one (`cue`, "a photo of").
    public func fewShotPrompt(examples: [(image: ImageContent, text: [Int32])], query: ImageContent, cue: [Int32]) -> Document {
        var segments: [Segment] = [.text(understandingTaskTokens)]
        for example in examples { segments += [.image(example.image), .text(example.text)] }
        return Document(segments + [.image(query), .text(cue)])
    }

    /// A text-only document.
    public func textDocument(_ ids: [Int32]) -> Document { Document([.text(ids)]) }

    /// The open prompt for generating an image from `caption` (pack with `packPrompts`): everything
    /// of the generation document before BOI. An empty caption is the unconditional prompt.
    public func generationPrompt(caption: [Int32]) -> Document {
        Document([.text(generationTaskTokens + caption)])
    }

    /// The open prompt for captioning `image`: everything of the understanding document before the
    /// caption (ends with EOI).
    public func understandingPrompt(image: ImageContent) -> Document {
        Document([.text(understandingTaskTokens), .image(image)])
    }

    /// Whether the next generation document should drop its caption (probability `captionDropout`);
    /// draws one number from `generator`.
    public func drawCaptionDropout(generator: inout RandomGenerator) -> Bool {
        generator.nextFloat() < config.captionDropout
    }

    /// The open prompt an image sampler continues: the generation prompt followed by BOI, so that
    /// the next position is the image's first.
    func imagePrompt(caption: [Int32]) -> Document {
        Document(generationPrompt(caption: caption).segments + [.text([vocabulary.boi])])
    }
}

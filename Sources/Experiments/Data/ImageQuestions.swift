// Templated questions about an image, with their exact answers: what the question-answering probe
// (qa_accuracy) asks of test images, and what question documents (data.qa_share) teach, in the manner
// of LLaVA's instruction data (Liu et al. 2023, §3) made from labels instead of a language model.
//
//   "what is it?"              the class: its noun ("coat"; "t-shirt" or "top"), or its data.classes name
//   "is it dark or light?"     Fashion-MNIST's measured properties (Captions), asked only when the image
//   "is it narrow or wide?"    falls in the low or high third of its class (the middle third has no
//   "is it small or large?"    word, so no answer)
//
// An answer is right when the generated words are exactly one of the accepted answers' words.
import Fusion

struct ImageQuestion: Equatable {
    /// The question every labelled image is asked: its class.
    static let classQuestion = "what is it?"

    let text: String
    /// Accepted answers, the first the one training documents use.
    let answers: [String]

    /// Whether this asks for the class (the other questions ask for a two-way attribute).
    var asksForClass: Bool { text == Self.classQuestion }

    /// Whether a generated answer is exactly one of the accepted ones (words, lower-cased).
    func accepts(_ generated: String) -> Bool {
        let words = Captions.words(in: generated)
        return answers.contains { Captions.words(in: $0) == words }
    }

    /// The questions image `index` of `dataset` has answers to (none without labels). Fashion-MNIST's
    /// classes (built in, or the same names in a folder) are asked about their measured properties too,
    /// when the images are grey as theirs.
    static func all(for dataset: ImageDataset, index: Int, classNames: [String]) -> [ImageQuestion] {
        guard let labels = dataset.labels else { return [] }
        let label = Int(labels[index])
        var questions: [ImageQuestion] = []
        if classNames == FashionMNIST.classNames {
            questions.append(ImageQuestion(text: classQuestion, answers: Captions.nounForms[label]))
            guard dataset.channels == 1 else { return questions }
            let size = dataset.side * dataset.side
            let properties = withExtendedLifetime(dataset.images) { Captions.properties(of: dataset.images.data + index * size, side: dataset.side) }
            let levels = Captions.levels(of: properties, label: label)
            for (level, low, high) in [(levels.brightness, "dark", "light"), (levels.aspect, "narrow", "wide"), (levels.area, "small", "large")]
            where level != .middle {
                questions.append(ImageQuestion(text: "is it \(low) or \(high)?", answers: [level == .low ? low : high]))
            }
        } else if label < classNames.count {
            questions.append(ImageQuestion(text: classQuestion, answers: [classNames[label]]))
        }
        return questions
    }
}

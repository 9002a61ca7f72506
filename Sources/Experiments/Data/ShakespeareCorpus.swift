// The Shakespeare corpus in the experiments: loading and the train/held-out split live in the library,
// Sources/Fusion/Text/ShakespeareCorpus.swift, where the tests reach them; this file says which texts
// the tokenizer learns from.
import Fusion

extension ShakespeareCorpus {
    /// The texts the BPE tokenizer is trained on: the training plays and the training captions, never
    /// held-out text (text_ppl would otherwise be measured on text that shaped the vocabulary).
    func tokenizerTexts(trainingCaptions: [String]) -> [String] {
        trainingPlays.map(\.text) + trainingCaptions
    }
}

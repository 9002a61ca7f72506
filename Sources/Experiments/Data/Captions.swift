// Captions of Fashion-MNIST sets: the caption rules themselves (properties, tertile cuts, phrasings,
// className(in:)) live in the library, Sources/Fusion/Text/Captions.swift, where the tests reach them;
// this file applies them to a loaded FashionMNIST.Set.
import Fusion

extension Captions {
    /// One caption per image of `set` ([N, 1, S, S]), item n in phrasing `variant(seed: seed, index: n)`:
    /// the same list on every machine for the same set and seed.
    static func captions(for set: FashionMNIST.Set, seed: UInt64) -> [String] {
        precondition(FashionMNIST.classNames == Captions.classNames,
                     "Captions.classNames and FashionMNIST.classNames disagree; keep them the same list")
        let side = set.side
        return (0..<set.count).map { n in
            caption(for: set.images.data + n * side * side, side: side, label: Int(set.labels[n]),
                    variant: variant(seed: seed, index: n))
        }
    }
}

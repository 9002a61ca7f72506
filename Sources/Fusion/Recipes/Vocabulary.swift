// One index space for everything the core reads and predicts (DESIGN.md, "one input format"):
//   [0, textSize)                         text ids of the BPE tokenizer, its special tokens among them
//   [textSize, textSize + imageCodes)     image codes, for the discrete recipes (Chameleon, Show-o)
// Transfusion's images are continuous and take no ids (imageCodes = 0).

public struct Vocabulary: Equatable, Codable, Sendable {
    /// Ids owned by the text tokenizer (bytes, merges and special tokens).
    public let textSize: Int
    /// Number of image codes K (0 for continuous images).
    public let imageCodes: Int
    public let bos: Int32, eos: Int32, pad: Int32, boi: Int32, eoi: Int32, mask: Int32, t2i: Int32, mmu: Int32

    public init(textSize: Int, imageCodes: Int, bos: Int32, eos: Int32, pad: Int32, boi: Int32, eoi: Int32,
                mask: Int32, t2i: Int32, mmu: Int32) {
        self.textSize = textSize
        self.imageCodes = imageCodes
        (self.bos, self.eos, self.pad, self.boi, self.eoi, self.mask, self.t2i, self.mmu) = (bos, eos, pad, boi, eoi, mask, t2i, mmu)
        for id in [bos, eos, pad, boi, eoi, mask, t2i, mmu] {
            precondition(id >= 0 && Int(id) < textSize, "Vocabulary: special id \(id) outside the text ids 0..<\(textSize)")
        }
    }

    /// V, the size of the embedding table and of the logits.
    public var size: Int { textSize + imageCodes }
    /// The first image-code id.
    public var imageCodeOffset: Int32 { Int32(textSize) }
    public var imageCodeRange: Range<Int32> { Int32(textSize)..<Int32(textSize + imageCodes) }
    public var specialIDs: [Int32] { [bos, eos, pad, boi, eoi, mask, t2i, mmu] }

    public func id(ofImageCode code: Int32) -> Int32 {
        precondition(code >= 0 && Int(code) < imageCodes, "Vocabulary: image code \(code) outside 0..<\(imageCodes)")
        return Int32(textSize) + code
    }
    public func imageCode(of id: Int32) -> Int32? { imageCodeRange.contains(id) ? id - Int32(textSize) : nil }
    public func isImageCode(_ id: Int32) -> Bool { imageCodeRange.contains(id) }
}

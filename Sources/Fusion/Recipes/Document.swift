// A training document: an ordered list of segments, each text or one image (DESIGN.md, "one input
// format"). Caption→image documents teach generation, image→caption documents teach understanding,
// text-only documents keep the language model honest.
//
// Token layout of one document (what `SequenceLayout` writes):
//     BOS  segment  segment  …  EOS          text segment: its ids as given (task tokens included)
//                                            image segment: BOI  n image positions  EOI
// with n = h·w codes (discrete recipes) or (h/p)·(w/p) latent patches (Transfusion, patch size p), or
// for pixels the understanding connector's tokens in the sequence (none under cross-attention fusion).

/// What fills an image's positions.
public enum ImageContent {
    /// h·w code indices in 0..<K, row-major (the autoencoder's `encodeToCodes`).
    case codes([Int32])
    /// Latents [C, h, w] (the autoencoder's `encodeToLatents`, scaled to unit variance).
    case latents(Tensor)
    /// Pixels [C, S, S] in [0, 1], for an understanding encoder apart from the generation tokenizer
    /// (`UnderstandingConfig`): what an image→caption document carries then. No loss is trained on them.
    case pixels(Tensor)
}

public enum Segment {
    case text([Int32])
    case image(ImageContent)
}

public struct Document {
    public var segments: [Segment]
    public init(_ segments: [Segment]) { self.segments = segments }

    /// Whether any segment is an image.
    public var hasImage: Bool { segments.contains { if case .image = $0 { return true } else { return false } } }

    /// True when an image comes before the first text id (an understanding example: image → caption);
    /// ids in `ignoring` (task tokens such as Show-o's MMU) do not count as text.
    public func imageComesFirst(ignoring: Set<Int32> = []) -> Bool {
        for segment in segments {
            switch segment {
            case .image: return true
            case .text(let ids) where ids.contains(where: { !ignoring.contains($0) }): return false
            case .text: continue
            }
        }
        return false
    }
}

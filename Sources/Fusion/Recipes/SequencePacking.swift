// Packing documents into fixed-length training sequences (as in Transfusion §4.1 and Chameleon §3.1:
// several documents per sequence, attention kept inside each). A document is never split, so every
// image arrives whole; what is left at the end of a sequence is padding.
//
// For each position the packed batch records its id, its RoPE position (restarting at 0 in each
// document), its document (−1 for padding) and, for image positions, which image it belongs to. Targets
// and loss masks are the recipe's business (see `RecipeLoss`); the attention pattern follows from the
// documents and from whether images are attended causally or bidirectionally.

/// One image placed in a packed batch.
public struct PackedImage {
    /// Sequence (row) of the batch.
    public let row: Int
    /// Index within the row of the first image position (the one after BOI).
    public let start: Int
    /// Number of image positions (codes, or latent patches).
    public let count: Int
    /// Which input document it came from, and whether it preceded every text id of that document.
    public let document: Int
    public let comesFirst: Bool
    public let content: ImageContent

    /// Whether it holds pixels for the understanding encoder (no loss, no generation representation).
    public var readsPixels: Bool { if case .pixels = content { return true } else { return false } }
}

/// Documents packed into B sequences of T positions. Flat arrays are B·T long, row-major.
public struct PackedBatch {
    public let rows: Int, length: Int
    /// Vocabulary ids: text and special ids; image codes for `.codes` images; PAD at latent positions
    /// and at padding.
    public var ids: [Int32]
    /// RoPE position of each id within its document.
    public let positions: [Int32]
    /// Document of each position, counted per row from 0; −1 marks padding.
    public let documentIDs: [Int32]
    /// Index into `images` of each position's image, −1 for text, special and padding positions.
    public let imageIndex: [Int32]
    public let images: [PackedImage]

    /// One attention mask per row: causal within documents, never across them; with `.bidirectional`,
    /// every image's positions also see each other (Show-o §3.2, Transfusion §3.2).
    public func masks(imageAttention: ImageAttention) -> [AttentionMask] {
        (0..<rows).map { row in
            let range = row * length..<(row + 1) * length
            let spans = imageAttention == .bidirectional ? Array(imageIndex[range]) : nil
            return AttentionMask(documentIDs: Array(documentIDs[range]), spanIDs: spans)
        }
    }

    /// Next-token targets: ids[i+1] when it lies in the same document, else −1 (ignored). A pixel image
    /// (an understanding encoder's tokens, or none in the sequence under cross-attention) is input only:
    /// its BOI and its positions predict nothing.
    public var nextTokenTargets: [Int32] {
        var targets = [Int32](repeating: -1, count: ids.count)
        for row in 0..<rows {
            for i in 0..<(length - 1) {
                let here = row * length + i
                if documentIDs[here] >= 0 && documentIDs[here + 1] == documentIDs[here] { targets[here] = ids[here + 1] }
            }
        }
        for image in images where image.readsPixels {
            let boi = image.row * length + image.start - 1
            for i in boi..<(boi + 1 + image.count) { targets[i] = -1 }
        }
        return targets
    }

    public func isImagePosition(_ index: Int) -> Bool { imageIndex[index] >= 0 }

    /// The flat indices (into `ids` and the other flat arrays) of rows `range`.
    public func flatIndices(ofRows range: Range<Int>) -> Range<Int> { range.lowerBound * length..<range.upperBound * length }

    /// Rows `range` as a batch of their own, images renumbered from 0: one rank's share of a
    /// data-parallel step. Documents never cross rows, so nothing is cut.
    public func rows(_ range: Range<Int>) -> PackedBatch {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "PackedBatch: rows \(range) outside 0..<\(rows)")
        if range == 0..<rows { return self }
        let flat = flatIndices(ofRows: range)
        let kept = imageIndices(inRows: range)
        let offset = Int32(kept.first ?? 0)
        return PackedBatch(rows: range.count, length: length, ids: Array(ids[flat]), positions: Array(positions[flat]),
                           documentIDs: Array(documentIDs[flat]), imageIndex: imageIndex[flat].map { $0 < 0 ? $0 : $0 - offset },
                           images: kept.map { i in
                               let image = images[i]
                               return PackedImage(row: image.row - range.lowerBound, start: image.start, count: image.count,
                                                  document: image.document, comesFirst: image.comesFirst, content: image.content)
                           })
    }

    /// Indices into `images` of the images in rows `range` (contiguous: images are packed in row order).
    public func imageIndices(inRows range: Range<Int>) -> [Int] { images.indices.filter { range.contains(images[$0].row) } }
}

/// Attention among one image's positions.
public enum ImageAttention: String, ConfigurationChoice, Sendable { case causal, bidirectional }

/// A document too long for the context; says both lengths.
public struct SequenceLengthError: Error, CustomStringConvertible, Equatable {
    public let documentLength: Int, contextLength: Int
    public var description: String {
        "a sequence of \(documentLength) positions (text, image and markers) does not fit the model's context of "
            + "\(contextLength) positions; shorten its text, or train with a larger recipe.model.context_length"
    }
}

/// Writes documents as ids (see `Document` for the layout) and packs them.
public struct SequenceLayout {
    public let vocabulary: Vocabulary
    /// Latent patch side p (Transfusion); a [C, h, w] latent takes (h/p)·(w/p) positions.
    public let patchSize: Int
    /// Positions a pixel image takes (`UnderstandingConfig.sequencePositions`); nil when the model has
    /// no understanding encoder apart from the generation tokenizer.
    public let pixelPositions: Int?

    public init(vocabulary: Vocabulary, patchSize: Int = 1, pixelPositions: Int? = nil) {
        precondition(patchSize >= 1, "SequenceLayout: patch size \(patchSize) must be at least 1")
        self.vocabulary = vocabulary
        self.patchSize = patchSize
        self.pixelPositions = pixelPositions
    }

    /// Number of positions an image takes (without BOI/EOI).
    public func positionCount(of image: ImageContent) -> Int {
        switch image {
        case .codes(let codes): return codes.count
        case .latents(let latents):
            precondition(latents.rank == 3 && latents.shape[1] % patchSize == 0 && latents.shape[2] % patchSize == 0,
                         "SequenceLayout: latents \(latents.shape) must be [C, h, w] with h, w multiples of the patch size \(patchSize)")
            return (latents.shape[1] / patchSize) * (latents.shape[2] / patchSize)
        case .pixels:
            guard let pixelPositions else {
                preconditionFailure("SequenceLayout: a pixel image, but the model reads images through the generation tokenizer (recipe.understanding.encoder: shared)")
            }
            return pixelPositions
        }
    }

    /// Positions a document takes, BOS and EOS included.
    public func length(of document: Document, closed: Bool = true) -> Int {
        var n = 1 + (closed ? 1 : 0)
        for segment in document.segments {
            switch segment {
            case .text(let ids): n += ids.count
            case .image(let image): n += positionCount(of: image) + 2
            }
        }
        return n
    }

    /// Packs documents in order, greedily, into rows of `length` positions; a document that does not fit
    /// the rest of a row starts the next one. With `rows` given, the batch has exactly that many (unused
    /// rows are padding) and documents that do not fit are an error; otherwise as many as needed.
    /// `closed: false` leaves out the EOS of every document (a prompt that sampling will continue).
    public func pack(_ documents: [Document], length: Int, rows: Int? = nil, closed: Bool = true) throws -> PackedBatch {
        var ids: [Int32] = [], positions: [Int32] = [], documentIDs: [Int32] = [], imageIndex: [Int32] = []
        var images: [PackedImage] = []
        var row = 0, used = 0, documentInRow: Int32 = 0
        func padRow() {
            let missing = length - used
            ids += Array(repeating: vocabulary.pad, count: missing)
            positions += Array(repeating: 0, count: missing)
            documentIDs += Array(repeating: -1, count: missing)
            imageIndex += Array(repeating: -1, count: missing)
            row += 1; used = 0; documentInRow = 0
        }
        for (documentNumber, document) in documents.enumerated() {
            let n = self.length(of: document, closed: closed)
            guard n <= length else { throw SequenceLengthError(documentLength: n, contextLength: length) }
            if used + n > length { padRow() }
            var position: Int32 = 0
            func append(_ id: Int32, image: Int32 = -1) {
                ids.append(id); positions.append(position); documentIDs.append(documentInRow); imageIndex.append(image)
                position += 1; used += 1
            }
            append(vocabulary.bos)
            let comesFirst = document.imageComesFirst(ignoring: Set(vocabulary.specialIDs))
            for segment in document.segments {
                switch segment {
                case .text(let text):
                    for id in text {
                        precondition(id >= 0 && Int(id) < vocabulary.textSize, "SequenceLayout: text id \(id) outside 0..<\(vocabulary.textSize)")
                        append(id)
                    }
                case .image(let image):
                    append(vocabulary.boi)
                    let count = positionCount(of: image), index = Int32(images.count)
                    images.append(PackedImage(row: row, start: used, count: count, document: documentNumber,
                                              comesFirst: comesFirst, content: image))
                    switch image {
                    case .codes(let codes): for code in codes { append(vocabulary.id(ofImageCode: code), image: index) }
                    case .latents, .pixels: for _ in 0..<count { append(vocabulary.pad, image: index) }
                    }
                    append(vocabulary.eoi)
                }
            }
            if closed { append(vocabulary.eos) }
            documentInRow += 1
        }
        if used > 0 || row == 0 { padRow() }
        if let rows {
            guard row <= rows else {
                throw ConfigurationError("SequenceLayout: \(documents.count) documents need \(row) sequences of \(length), more than the \(rows) asked for")
            }
            while row < rows { padRow() }
        }
        return PackedBatch(rows: row, length: length, ids: ids, positions: positions, documentIDs: documentIDs,
                           imageIndex: imageIndex, images: images)
    }
}

// Where a pixel image (an image→caption document's image, for an understanding encoder apart from the
// generation tokenizer) enters the core: its connector tokens at its positions in the sequence, and its
// features in the cross-attention layers' context (`UnderstandingConfig.fusion`).
//
// Who sees an image through cross-attention: the positions of its own document from its EOI on (the
// text that follows it, as Flamingo's text attends to the image just before it, §2.2 and Fig. 7);
// earlier positions and other documents packed in the same row see nothing of it.
//
// Shape alphabet: B rows, T length, D width, I pixel images, M tokens per image, K = M × the most
// pixel images in one row.

extension FusionModel {
    /// The pixel images of `batch`, in order, as [I, C, S, S]; nil when there are none.
    func stackedPixels(_ batch: PackedBatch) -> (indices: [Int], pixels: Tensor)? {
        let indices = batch.images.indices.filter { batch.images[$0].readsPixels }
        guard !indices.isEmpty else { return nil }
        let pixels = indices.map { i -> Tensor in
            guard case .pixels(let p) = batch.images[i].content else { preconditionFailure("FusionModel: image \(i) holds no pixels") }
            return p.reshaped([1] + p.shape)
        }
        return (indices, concatenate(pixels, axis: 0))
    }

    /// Token embeddings [B·T, D] with the connector tokens of every pixel image at its positions.
    func withPixelTokens(_ tokens: Tensor, _ batch: PackedBatch) -> Tensor {
        guard let understanding, let (indices, pixels) = stackedPixels(batch),
              let sequence = understanding.sequenceTokens(pixels) else { return tokens }
        var rows: [Int] = []
        for i in indices {
            let image = batch.images[i]
            rows += (0..<image.count).map { image.row * batch.length + image.start + $0 }
        }
        return tokens.replacingRows(rows, with: sequence.reshaped([rows.count, config.model.width]))
    }

    /// The cross-attention layers' context of `batch`: each row's pixel images' features side by side,
    /// and which position sees which (see the file comment). Nil without cross-attention or pixel images.
    func crossAttentionContext(_ batch: PackedBatch) -> CrossAttentionContext? {
        guard let understanding, understanding.config.crossAttends, let (indices, pixels) = stackedPixels(batch),
              let features = understanding.crossAttentionFeatures(pixels) else { return nil }
        let (m, d, t) = (features.shape[1], config.model.width, batch.length)
        let perRow = (0..<batch.rows).map { row in indices.filter { batch.images[$0].row == row } }
        let k = m * (perRow.map(\.count).max() ?? 0)
        // Feature rows gathered into [B, K, D]; a row with fewer images repeats feature row 0, masked out.
        var gather = [Int32](repeating: 0, count: batch.rows * k)
        var allowed = [[Bool]](repeating: [Bool](repeating: false, count: t * k), count: batch.rows)
        for (row, images) in perRow.enumerated() {
            for (slot, i) in images.enumerated() {
                let image = batch.images[i], stackIndex = indices.firstIndex(of: i)!
                let document = batch.documentIDs[row * t + image.start - 1]  // BOI's
                for j in 0..<m { gather[row * k + slot * m + j] = Int32(stackIndex * m + j) }
                for query in (image.start + image.count)..<t where batch.documentIDs[row * t + query] == document {
                    for j in 0..<m { allowed[row][query * k + slot * m + j] = true }
                }
            }
        }
        let gathered = embedding(features.reshaped([features.shape[0] * m, d]), ids: gather).reshaped([batch.rows, k, d])
        return CrossAttentionContext(features: gathered, allowed: allowed)
    }

    /// Features per row of a context (m tokens × the row's pixel images): what a decoded position sees.
    func crossAttentionKeys(_ batch: PackedBatch) -> [Int] {
        guard let understanding, understanding.config.crossAttends else { return [] }
        let m = understanding.config.connectorTokens(side: understanding.config.imageSide)
        return (0..<batch.rows).map { row in m * batch.images.filter { $0.row == row && $0.readsPixels }.count }
    }
}

// Show-o's objective (arXiv 2408.12528, §3.2): text keeps the next-token loss (NTP); image codes are
// learned by masked-token prediction (MTP, after MaskGIT, Chang et al. 2022, §3.1): per image, draw
// u ~ U(0, 1), replace ⌈r(u)·n⌉ of its n codes (at least one) by MASK in the *input*, and predict the
// original code at each masked position, at that same position (not shifted), with full attention
// inside the image (the recipe's `imageAttention = .bidirectional`).
//
// Which position trains on what, for  BOS T2I c₁ c₂ BOI k₁ k₂ k₃ k₄ EOI EOS :
//   text positions (BOS, T2I, c₁, c₂, EOI)  next id, when it is in the same document and is not an
//                                            image position: c₂ predicts BOI, EOI predicts EOS
//   BOI                                      nothing (its next id is an image code, which MTP covers)
//   masked image positions                   their own original code
//   unmasked image positions                 nothing (the last one does not predict EOI either: the
//                                            samplers write EOI, it is never predicted)
// Understanding images (a document that opens with the MMU task token, `BOS MMU BOI k… EOI caption
// EOS`) are given clean and get no image loss, as in Show-o §3.2 where MMU trains only the answer.
// Without task tokens an understanding image cannot be told from a generation image whose caption
// was dropped, so every image is masked and trained.
//
// total = (Σ text CE + w · Σ masked-code CE) / (text targets + masked codes), w = maskedTokenWeight:
// with w = 1 the mean over every trained position, as Chameleon's loss is, so the two recipes' losses
// weigh a position alike. (Show-o writes L_MTP + α·L_NTP with each part a mean over its own
// positions; the ratio of counts moves from batch to batch, so a fixed w is the closer constant.)
//
// Shape alphabet: B batch, T sequence, V vocabulary, N = B·T.

/// What Show-o's loss trains on one packed batch (flat arrays of N = B·T, row-major).
struct MaskedTokenTargets {
    /// The batch's ids with the masked image codes replaced by MASK: what the core reads.
    let inputIDs: [Int32]
    /// Next-token targets of text positions; −1 where nothing is trained.
    let textTargets: [Int32]
    /// The original code id at each masked image position; −1 elsewhere.
    let imageTargets: [Int32]

    var textCount: Int { textTargets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }
    var imageCount: Int { imageTargets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }
}

extension FusionModel {
    /// Draws the masks of a packed batch of code images (u, then which positions, per image in order)
    /// and sets the targets.
    func maskedTokenTargets(_ batch: PackedBatch, generator: inout RandomGenerator) -> MaskedTokenTargets {
        var inputIDs = batch.ids
        var imageTargets = [Int32](repeating: -1, count: batch.ids.count)
        for image in batch.images where !image.readsPixels {  // pixels: an understanding encoder's, no loss
            guard case .codes = image.content else {
                preconditionFailure("maskedTokenLoss: recipe '\(config.recipe)' masks image codes, but the batch holds latents")
            }
            let first = image.row * batch.length + image.start
            // BOS MMU BOI: an understanding image, given clean.
            if config.taskTokens && image.start >= 2 && batch.ids[first - 2] == vocabulary.mmu { continue }
            let u = generator.nextFloat()
            let masked = config.maskSchedule.maskedCount(of: image.count, at: u, shape: config.maskScheduleShape)
            for j in generator.permutation(image.count).prefix(masked) {
                imageTargets[first + j] = batch.ids[first + j]
                inputIDs[first + j] = vocabulary.mask
            }
        }
        var textTargets = batch.nextTokenTargets
        for i in textTargets.indices where textTargets[i] >= 0 && (batch.isImagePosition(i) || batch.isImagePosition(i + 1)) {
            textTargets[i] = -1  // a target ≥ 0 means i + 1 is in the same row
        }
        return MaskedTokenTargets(inputIDs: inputIDs, textTargets: textTargets, imageTargets: imageTargets)
    }

    /// Show-o's loss of a packed batch; `generator` draws the mask ratios and masked positions (of the
    /// whole batch, so that one rank's share, with `rows`, masks its images as the whole batch would).
    func maskedTokenLoss(_ batch: PackedBatch, rows: Range<Int>, generator: inout RandomGenerator) -> RecipeLoss {
        let targets = maskedTokenTargets(batch, generator: &generator)
        let share = batch.flatIndices(ofRows: rows)
        let logits = tokenLogits(batch.rows(rows), inputIDs: Array(targets.inputIDs[share]))  // [N, V]
        let text = LossShare(targets: Array(targets.textTargets[share]), of: targets.textCount)
        let image = LossShare(targets: Array(targets.imageTargets[share]), of: targets.imageCount)
        let textLoss = crossEntropy(logits, targets: text.targets, zLoss: config.zLoss)
        let imageLoss = crossEntropy(logits, targets: image.targets, zLoss: config.zLoss)
        let count = Float(max(targets.textCount + targets.imageCount, 1))
        let total = textLoss * (Float(text.count) / count) + imageLoss * (config.maskedTokenWeight * Float(image.count) / count)
        return RecipeLoss(total: total, parts: [("text_loss", text.part(textLoss.item)), ("image_loss", image.part(imageLoss.item))],
                          trainedPositions: text.count + image.count)
    }
}

// Chameleon's objective (arXiv 2405.09818, §2.1, §2.3): images are VQ codes in the shared vocabulary
// and every position predicts the next id of its document with one cross-entropy, text and image
// alike, plus the z-loss that keeps log Z near 0. The same next-token loss on text is what the other
// two recipes use for their language-model part.

extension FusionModel {
    /// Logits [N, V] of a packed batch whose image positions hold code ids (inputs are token embeddings).
    func tokenLogits(_ batch: PackedBatch, inputIDs: [Int32]? = nil) -> Tensor {
        let (b, t, d) = (batch.rows, batch.length, config.model.width)
        let inputs = withPixelTokens(core.embed(inputIDs ?? batch.ids), batch).reshaped([b, t, d])
        let hidden = core.hiddenStates(inputs, positions: batch.positions, masks: masks(for: batch),
                                       context: crossAttentionContext(batch), axes: positionAxes(batch))
        return core.logits(hidden.reshaped([b * t, d]))
    }

    /// Next-token cross-entropy over every position whose successor is in the same document; with
    /// `rows`, one rank's share of it (see `RecipeLoss`).
    func nextTokenLoss(_ batch: PackedBatch, rows: Range<Int>) -> RecipeLoss {
        let logits = tokenLogits(batch.rows(rows))
        let targets = batch.nextTokenTargets
        // Split the targets so the log shows text and image loss apart; the sum of the two parts,
        // each weighted by its share of targets, is the mean over all targets.
        var textTargets = targets, imageTargets = targets
        var textCount = 0, imageCount = 0
        for (i, target) in targets.enumerated() where target >= 0 {
            if vocabulary.isImageCode(target) { textTargets[i] = -1; imageCount += 1 } else { imageTargets[i] = -1; textCount += 1 }
        }
        let share = batch.flatIndices(ofRows: rows)
        let text = LossShare(targets: Array(textTargets[share]), of: textCount)
        let image = LossShare(targets: Array(imageTargets[share]), of: imageCount)
        let count = Float(max(textCount + imageCount, 1))
        let textLoss = crossEntropy(logits, targets: text.targets, zLoss: config.zLoss)
        let imageLoss = crossEntropy(logits, targets: image.targets, zLoss: config.zLoss)
        let total = textLoss * (Float(text.count) / count) + imageLoss * (Float(image.count) / count)
        return RecipeLoss(total: total, parts: [("text_loss", text.part(textLoss.item)), ("image_loss", image.part(imageLoss.item))],
                          trainedPositions: text.count + image.count)
    }

    /// The summed next-token cross-entropy of the text targets of `batch`, and their count: the plain
    /// −log p of each next token and nothing else (no z-loss, masking weight or diffusion term), so that
    /// exp(sum / count), the held-out perplexity, means the same for every recipe.
    public func textCrossEntropy(_ batch: PackedBatch) -> (sum: Double, count: Int) {
        let logits = withoutGradients { tokenLogits(batch) }
        var targets = batch.nextTokenTargets
        for (i, target) in targets.enumerated() where target >= 0 && vocabulary.isImageCode(target) { targets[i] = -1 }
        let count = targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        guard count > 0 else { return (0, 0) }
        let mean = withoutGradients { crossEntropy(logits, targets: targets, zLoss: 0) }
        return (Double(mean.item) * Double(count), count)
    }
}

// Show-o's objective (arXiv 2408.12528, §3.2). Placeholder until the Show-o recipe lands.

extension FusionModel {
    func maskedTokenLoss(_ batch: PackedBatch, generator: inout RandomGenerator) -> RecipeLoss {
        preconditionFailure("the Show-o objective (maskedTokens) is not built yet")
    }
}

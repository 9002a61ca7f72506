// Transfusion's objective (arXiv 2408.11039, §3.1). Placeholder until the Transfusion recipe lands.

extension FusionModel {
    func diffusionLoss(_ batch: PackedBatch, generator: inout RandomGenerator) -> RecipeLoss {
        preconditionFailure("the Transfusion objective (diffusion) is not built yet")
    }
}

/// Latent patches ↔ core width (Transfusion §3.2). Placeholder until the Transfusion recipe lands.
public final class LatentPatchCodec: Module {
    init(config: RecipeConfig, generator: inout RandomGenerator) {}

    /// Latents [I, C, h, w] at per-image timesteps → patch embeddings [I·P, D], P = (h/p)·(w/p).
    func embed(_ latents: Tensor, timesteps: [Int]) -> Tensor {
        preconditionFailure("the Transfusion patch encoder is not built yet")
    }
}

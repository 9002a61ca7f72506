// Mask schedules (MaskGIT, Chang et al. 2022, §3.2 "masking design"; used by Show-o, arXiv
// 2408.12528, §3.2): the share r(u) of an image's tokens that are masked, as a decreasing function
// of u ∈ [0, 1] with r(0) = 1 (all masked) and r(1) = 0 (none masked).
//
// Training draws u ~ U(0, 1) per image and masks ⌈r(u)·n⌉ of its n codes (at least one, so every
// image trains something). Sampling reads the same curve forwards: after step s of S, n·r((s+1)/S)
// codes are still masked, so the last step leaves none.
//
//   cosine    r = cos(π/2 · u)                          MaskGIT's choice, Show-o's default
//   linear    r = 1 − u
//   power     r = 1 − u^k                               k = maskScheduleShape (k > 1 masks more)
//   sigmoid   r = (σ(3k) − σ(k(6u − 3))) / (σ(3k) − σ(−3k))
//             the sigmoid schedule of Chen 2023 ("On the importance of noise scheduling for diffusion
//             models", §2) with start −3, end 3 and τ = 1/k, in the form Show-o's code uses; k =
//             maskScheduleShape, larger k is steeper around u = ½.
import Foundation

extension RecipeConfig.MaskSchedule {
    /// The masked share r(u) ∈ [0, 1] at u ∈ [0, 1] (clamped); `shape` is k of `.power` and `.sigmoid`.
    public func maskRatio(_ u: Float, shape: Float = 2) -> Float {
        let u = min(max(u, 0), 1)
        let r: Float
        switch self {
        case .cosine: r = Foundation.cos(Float.pi / 2 * u)
        case .linear: r = 1 - u
        case .power: r = 1 - Foundation.pow(u, shape)
        case .sigmoid:
            func sigmoid(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }
            let high = sigmoid(3 * shape), low = sigmoid(-3 * shape)
            r = (high - sigmoid(shape * (6 * u - 3))) / (high - low)
        }
        return min(max(r, 0), 1)  // cos(π/2) ≈ −4e-8 in Float
    }

    /// Codes masked in training for an image of `count` codes at u: ⌈r(u)·count⌉, at least 1.
    public func maskedCount(of count: Int, at u: Float, shape: Float = 2) -> Int {
        precondition(count > 0, "MaskSchedule.maskedCount: an image needs at least one code (got \(count))")
        let masked = Int((maskRatio(u, shape: shape) * Float(count)).rounded(.up))
        return min(max(masked, 1), count)
    }

    /// Codes still masked after sampling step `step` (0-based) of `steps` for an image of `count`
    /// codes, `masked` of which are masked before the step (MaskGIT §3.2 and its reference code):
    /// ⌊count·r((step+1)/steps)⌋, but at least one fewer than before and at least 1 until the last
    /// step, which unmasks everything.
    public func stillMasked(afterStep step: Int, of steps: Int, count: Int, masked: Int, shape: Float = 2) -> Int {
        precondition(steps > 0 && (0..<steps).contains(step), "MaskSchedule.stillMasked: step \(step) of \(steps)")
        if step == steps - 1 || masked <= 1 { return 0 }
        let planned = Int((Float(count) * maskRatio(Float(step + 1) / Float(steps), shape: shape)).rounded(.down))
        return max(1, min(masked - 1, planned))
    }
}

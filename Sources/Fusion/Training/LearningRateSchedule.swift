// Learning-rate schedule: linear warm-up, then cosine decay to a floor. Cosine annealing is from
// Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts" (ICLR 2017, eq. 5,
// one cycle, no restart); the warm-up + cosine-to-10%-floor form is the one GPT-3 (Brown et al. 2020,
// App. B), Chinchilla and Llama use, and nanoGPT's `get_lr`.
//
//   step < warmup:          rate = peak · (step + 1) / (warmup + 1)       (never 0, reaches peak at `warmup`)
//   warmup ≤ step < total:  rate = floor + ½(peak − floor)(1 + cos(π · (step − warmup) / (total − warmup)))
//   step ≥ total:           rate = floor

import Foundation

/// Linear warm-up to `peak` over `warmupSteps`, then cosine decay to `floor` at `totalSteps`.
/// Steps count from 0: `rate(at: s)` is the rate for the optimiser step with `stepCount == s` before it.
public struct WarmupCosineSchedule: Codable, Equatable, Sendable {
    /// The largest rate, reached at step `warmupSteps`.
    public var peak: Float
    /// Steps of linear warm-up (0: start at the peak).
    public var warmupSteps: Int
    /// The step at which the decay reaches `floor`; later steps stay there.
    public var totalSteps: Int
    /// The final rate (commonly peak / 10).
    public var floor: Float

    public init(peak: Float, warmupSteps: Int, totalSteps: Int, floor: Float) {
        precondition(warmupSteps >= 0 && totalSteps >= warmupSteps,
                     "WarmupCosineSchedule: need 0 ≤ warmupSteps ≤ totalSteps, got \(warmupSteps), \(totalSteps)")
        precondition(floor >= 0 && floor <= peak,
                     "WarmupCosineSchedule: need 0 ≤ floor ≤ peak, got floor \(floor), peak \(peak)")
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.floor = floor
    }

    /// The learning rate for step `step` (0-based).
    public func rate(at step: Int) -> Float {
        precondition(step >= 0, "WarmupCosineSchedule.rate: step must be ≥ 0, got \(step)")
        if step < warmupSteps {
            return Float(Double(peak) * Double(step + 1) / Double(warmupSteps + 1))
        }
        if step >= totalSteps { return floor }
        // Here warmupSteps ≤ step < totalSteps, so the denominator is positive.
        let progress = Double(step - warmupSteps) / Double(totalSteps - warmupSteps)
        let cosine = 0.5 * (1 + cos(Double.pi * progress))
        return Float(Double(floor) + (Double(peak) - Double(floor)) * cosine)
    }
}

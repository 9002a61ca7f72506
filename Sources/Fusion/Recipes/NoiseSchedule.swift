// The cosine noise schedule of Nichol & Dhariwal 2021 ("Improved Denoising Diffusion Probabilistic
// Models", §3.2, eq. 17), which Transfusion trains with (arXiv 2408.11039, §2.2: 1000 steps), and the
// timestep subsequences the DDIM/DDPM samplers walk (Song et al. 2021, "Denoising Diffusion Implicit
// Models", §4.2 and App. C.1).
//
//     f(t) = cos²( (t/T + s)/(1 + s) · π/2 ),   s = 0.008,   ᾱ(t) = f(t)/f(0)
//     β_t  = min(1 − ᾱ(t)/ᾱ(t−1), 0.999),      ᾱ_t = Π_{i≤t} (1 − β_i)
//
// t runs over 1...T (t = 0 is the clean image, ᾱ_0 = 1). Clipping β at 0.999 keeps the last step from
// being singular (f(T) = 0); it changes ᾱ only at the last few steps, where it is ≈ 0 either way. The
// table is kept in Float64 because 1 − ᾱ near t = 0 and ᾱ near t = T lose digits in Float32.
import Foundation

public struct NoiseSchedule: Equatable, Sendable {
    /// T, the number of training timesteps.
    public let steps: Int
    /// β_t for t = 0...T (β_0 = 0).
    public let betas: [Double]
    /// ᾱ_t for t = 0...T (ᾱ_0 = 1).
    public let alphaBars: [Double]

    /// The offset s that keeps β small near t = 0 (Nichol & Dhariwal §3.2), and the β clip.
    public static let cosineOffset = 0.008
    public static let maximumBeta = 0.999

    /// The cosine schedule over `steps` timesteps.
    public init(cosineSteps steps: Int) {
        precondition(steps >= 1, "NoiseSchedule: need at least one step, got \(steps)")
        self.steps = steps
        var betas = [0.0], alphaBars = [1.0]
        for t in 1...steps {
            let beta = min(1 - Self.cosineAlphaBar(t, steps: steps) / Self.cosineAlphaBar(t - 1, steps: steps), Self.maximumBeta)
            betas.append(beta)
            alphaBars.append(alphaBars[t - 1] * (1 - beta))
        }
        self.betas = betas
        self.alphaBars = alphaBars
    }

    /// The closed form ᾱ(t) = f(t)/f(0) before β clipping (t may be fractional).
    public static func cosineAlphaBar(_ t: Double, steps: Int) -> Double {
        func f(_ t: Double) -> Double {
            let angle = (t / Double(steps) + cosineOffset) / (1 + cosineOffset) * Double.pi / 2
            return cos(angle) * cos(angle)
        }
        return f(t) / f(0)
    }

    static func cosineAlphaBar(_ t: Int, steps: Int) -> Double { cosineAlphaBar(Double(t), steps: steps) }

    /// ᾱ_t for t in 0...T.
    public func alphaBar(_ t: Int) -> Double {
        precondition((0...steps).contains(t), "NoiseSchedule: timestep \(t) outside 0...\(steps)")
        return alphaBars[t]
    }

    /// The coefficients of x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε.
    public func signalAndNoise(_ t: Int) -> (signal: Float, noise: Float) {
        let a = alphaBar(t)
        return (Float(a.squareRoot()), Float((1 - a).squareRoot()))
    }

    /// S timesteps out of 1...T, evenly spaced, in sampling order (descending):
    /// τ_i = 1 + ⌊i·T/S⌋ for i = S−1, …, 0. This is DDIM's "uniform" skip (App. C.1; its code's
    /// `range(0, T, T/S)` in 0-based steps), so τ ends at 1 and, for S < T, starts just below T:
    /// pure noise stands in for x_{τ_S} (√ᾱ ≈ 0.03 at T = 1000, S = 50), and the first step avoids
    /// t = T, where 1/√ᾱ_T ≈ 2·10⁴ would blow any error in ε̂ up into x̂₀. With S = T it is 1...T.
    public func samplingTimesteps(count: Int) -> [Int] {
        precondition((1...steps).contains(count), "NoiseSchedule: \(count) sampling steps, expected 1...\(steps)")
        return (0..<count).reversed().map { 1 + $0 * steps / count }
    }
}

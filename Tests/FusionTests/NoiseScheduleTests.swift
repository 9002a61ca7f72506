// The cosine schedule against its closed form, and the samplers' update rules driven by oracle
// predictions (the true ε or velocity of a known x₀), which must land on x₀.
import XCTest
@testable import Fusion

final class NoiseScheduleTests: XCTestCase {
    let schedule = NoiseSchedule(cosineSteps: 1_000)

    func testCosineScheduleFallsFromOneToZeroAndMatchesTheClosedForm() {
        XCTAssertEqual(schedule.alphaBar(0), 1)
        XCTAssertGreaterThan(schedule.alphaBar(1), 0.9999)  // ᾱ₁ = f(1)/f(0) ≈ 1 − 4·10⁻⁵ with s = 0.008
        XCTAssertLessThan(schedule.alphaBar(1_000), 1e-6)
        for t in 1...1_000 { XCTAssertLessThan(schedule.alphaBar(t), schedule.alphaBar(t - 1), "t = \(t)") }
        // Clipping β at 0.999 touches only the very end; elsewhere ᾱ is the closed form to Float64 rounding.
        var worst = 0.0
        for t in 0...990 {
            worst = max(worst, abs(schedule.alphaBar(t) - NoiseSchedule.cosineAlphaBar(Double(t), steps: 1_000)))
        }
        XCTAssertLessThan(worst, 1e-12)
        // Spot values from the formula by hand: the middle of the schedule, ᾱ(500) = cos²(0.504/1.008·π/2)/f(0).
        let f0 = pow(cos(0.008 / 1.008 * Double.pi / 2), 2)
        XCTAssertEqual(schedule.alphaBar(500), pow(cos(0.508 / 1.008 * Double.pi / 2), 2) / f0, accuracy: 1e-12)
        XCTAssertEqual(schedule.betas.max()!, NoiseSchedule.maximumBeta, accuracy: 1e-12)
        XCTAssertEqual(schedule.betas.filter { $0 >= NoiseSchedule.maximumBeta }.count, 1)  // only t = T is clipped
    }

    func testSamplingTimestepsAreEvenlySpacedAndDescending() {
        XCTAssertEqual(schedule.samplingTimesteps(count: 4), [751, 501, 251, 1])
        let fifty = schedule.samplingTimesteps(count: 50)
        XCTAssertEqual(fifty.first, 981)
        XCTAssertEqual(fifty.last, 1)
        XCTAssertEqual(Set(zip(fifty, fifty.dropFirst()).map { $0 - $1 }), [20])
        XCTAssertEqual(schedule.samplingTimesteps(count: 1_000), Array((1...1_000).reversed()))
    }

    /// A known x₀ and an oracle that returns the ε that x_t actually contains: DDIM (deterministic) and
    /// DDPM (stochastic, but its x̂₀ is exact) end at x₀.
    func testDDIMAndDDPMWithTheTrueNoiseRecoverTheImage() {
        let x0 = Tensor(testValues(2 * 2 * 4 * 4, seed: 1, range: -2...2), shape: [2, 2, 4, 4])
        for (kind, steps) in [(DiffusionSamplerKind.ddim, 50), (.ddim, 7), (.ddpm, 50), (.ddpm, 1_000)] {
            var generator = RandomGenerator(seed: 2)
            let noise = Tensor.randomNormal(x0.shape, std: 1, generator: &generator)
            var oracleCalls = 0
            let result = DiffusionSolver.solve(kind, from: noise, steps: steps, schedule: schedule, generator: &generator) { x, t in
                oracleCalls += 1
                let (signal, noise) = schedule.signalAndNoise(Int(t))
                return (x - x0 * signal) / noise
            }
            XCTAssertEqual(oracleCalls, steps)
            let error = zip(result.array, x0.array).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(error, 2e-3, "\(kind) with \(steps) steps: max |x − x₀| = \(error)")
        }
    }

    /// The first DDIM step is well conditioned: from pure noise, with an ε̂ off by 1 % everywhere, the
    /// sample stays within a few units of x₀ instead of blowing up by 1/√ᾱ_T.
    func testDDIMIsStableAgainstASmallErrorInTheNoisePrediction() {
        let x0 = Tensor(repeating: 1, shape: [1, 2, 2, 2])
        var generator = RandomGenerator(seed: 3)
        let noise = Tensor.randomNormal(x0.shape, std: 1, generator: &generator)
        let result = DiffusionSolver.solve(.ddim, from: noise, steps: 50, schedule: schedule, generator: &generator) { x, t in
            let (signal, noise) = schedule.signalAndNoise(Int(t))
            return (x - x0 * signal) / noise * 1.01
        }
        XCTAssertLessThan(result.array.map { abs($0 - 1) }.max()!, 1)
    }

    /// Straight paths: with the true velocity ε − x₀, Euler and midpoint are exact at any step count.
    func testFlowSolversWithTheTrueVelocityRecoverTheImage() {
        let x0 = Tensor(testValues(2 * 2 * 2 * 2, seed: 4, range: -2...2), shape: [2, 2, 2, 2])
        for (kind, steps) in [(DiffusionSamplerKind.euler, 1), (.euler, 10), (.midpoint, 3), (.midpoint, 50)] {
            var generator = RandomGenerator(seed: 5)
            let noise = Tensor.randomNormal(x0.shape, std: 1, generator: &generator)
            var times: [Float] = []
            let result = DiffusionSolver.solve(kind, from: noise, steps: steps, schedule: schedule, generator: &generator) { x, t in
                times.append(t)
                // v = ε − x₀ with ε recovered from x_t = (1 − t)x₀ + tε: v = (x_t − x₀)/t.
                return (x - x0) / (t / 1_000)
            }
            XCTAssertEqual(times.count, kind == .euler ? steps : 2 * steps)
            XCTAssertEqual(times.first, 1_000)
            let error = zip(result.array, x0.array).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(error, 1e-4, "\(kind) with \(steps) steps: max |x − x₀| = \(error)")
        }
    }
}

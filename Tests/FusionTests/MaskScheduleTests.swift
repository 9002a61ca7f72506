// Mask schedules (MaskGIT §3.2, Show-o §3.2): the curves, the training counts and the sampler's plan.
import XCTest
@testable import Fusion

final class MaskScheduleTests: XCTestCase {
    typealias Schedule = RecipeConfig.MaskSchedule

    func testEveryScheduleGoesFromAllMaskedToNoneAndDecreases() {
        for schedule in Schedule.allCases {
            for shape: Float in [0.5, 2, 4] {
                XCTAssertEqual(schedule.maskRatio(0, shape: shape), 1, accuracy: 1e-6, "\(schedule)")
                XCTAssertEqual(schedule.maskRatio(1, shape: shape), 0, accuracy: 1e-6, "\(schedule)")
                let values = (0...100).map { schedule.maskRatio(Float($0) / 100, shape: shape) }
                XCTAssert(zip(values, values.dropFirst()).allSatisfy { $0 >= $1 }, "\(schedule) k=\(shape) is not decreasing: \(values)")
                XCTAssert(values.allSatisfy { (0...1).contains($0) })
            }
        }
    }

    func testTheFormulas() {
        XCTAssertEqual(Schedule.cosine.maskRatio(1.0 / 3), cos(Float.pi / 6), accuracy: 1e-6)
        XCTAssertEqual(Schedule.cosine.maskRatio(0.5), Float(0.5).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(Schedule.linear.maskRatio(0.25), 0.75, accuracy: 1e-6)
        XCTAssertEqual(Schedule.power.maskRatio(0.5, shape: 2), 0.75, accuracy: 1e-6)
        XCTAssertEqual(Schedule.power.maskRatio(0.5, shape: 3), 0.875, accuracy: 1e-6)
        // The sigmoid schedule is point-symmetric about (½, ½) and steeper there for larger k.
        XCTAssertEqual(Schedule.sigmoid.maskRatio(0.5, shape: 1), 0.5, accuracy: 1e-6)
        XCTAssertEqual(Schedule.sigmoid.maskRatio(0.2, shape: 2) + Schedule.sigmoid.maskRatio(0.8, shape: 2), 1, accuracy: 1e-6)
        XCTAssertGreaterThan(Schedule.sigmoid.maskRatio(0.4, shape: 4), Schedule.sigmoid.maskRatio(0.4, shape: 1))
        // k = 1 is Show-o's sigmoid_schedule(start −3, end 3, τ 1): at u = 0.25, σ(−1.5).
        func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }
        XCTAssertEqual(Schedule.sigmoid.maskRatio(0.25, shape: 1), (sigmoid(3) - sigmoid(-1.5)) / (sigmoid(3) - sigmoid(-3)), accuracy: 1e-6)
    }

    func testTrainingMasksTheCeilingAndAtLeastOne() {
        XCTAssertEqual(Schedule.cosine.maskedCount(of: 4, at: 0.5), 3)  // ⌈2.83⌉
        XCTAssertEqual(Schedule.cosine.maskedCount(of: 4, at: 0), 4)
        XCTAssertEqual(Schedule.cosine.maskedCount(of: 4, at: 0.9999), 1)
        XCTAssertEqual(Schedule.linear.maskedCount(of: 10, at: 0.75), 3)  // ⌈2.5⌉
        XCTAssertEqual(Schedule.linear.maskedCount(of: 64, at: 0.5), 32)
    }

    /// Sampling: after step s of S, ⌊n·r((s+1)/S)⌋ remain masked, at least one fewer each step, none at the end.
    func testSamplerPlanFollowsTheSchedule() {
        var masked = 16, plan: [Int] = []
        for step in 0..<4 {
            masked = Schedule.cosine.stillMasked(afterStep: step, of: 4, count: 16, masked: masked)
            plan.append(masked)
        }
        XCTAssertEqual(plan, [14, 11, 6, 0])  // 16·cos(π/8) = 14.8, 16·cos(π/4) = 11.3, 16·cos(3π/8) = 6.1
        // More steps than codes: one code per step until the last step takes the rest.
        masked = 4; plan = []
        for step in 0..<12 {
            masked = Schedule.linear.stillMasked(afterStep: step, of: 12, count: 4, masked: masked)
            plan.append(masked)
        }
        XCTAssertEqual(plan, [3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Schedule.cosine.stillMasked(afterStep: 0, of: 1, count: 9, masked: 9), 0)
    }
}

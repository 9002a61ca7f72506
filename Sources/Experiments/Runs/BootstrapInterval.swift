// Intervals for the scaling fits and FLOP-parity ratios by the bootstrap over runs (Efron & Tibshirani,
// "An Introduction to the Bootstrap", 1993, ch. 6 and 13): each fit's runs are drawn with replacement,
// the power law is fitted again, and the 2.5 % and 97.5 % quantiles of the refitted quantity over the
// resamples make its 95 % percentile interval. A resample whose runs sit at fewer than two budgets has
// no fit and is left out. With five runs a fit this says how much the answer leans on single runs; it is
// not a statement about seeds, which the per-seed spread reports where seeds ran.
import Fusion

enum BootstrapInterval {
    /// Resamples per fit: enough for the 2.5 % quantile to rest on 25 values.
    static let resamples = 1000

    struct Interval: Equatable {
        let low: Double, high: Double
        func contains(_ x: Double) -> Bool { low <= x && x <= high }
    }

    /// The central `level` interval of `values` by the quantiles of their order statistics, interpolated
    /// linearly between neighbours (Hyndman & Fan 1996, definition 7); nil for fewer than two values.
    static func percentile(_ values: [Double], level: Double = 0.95) -> Interval? {
        guard values.count >= 2 else { return nil }
        let sorted = values.sorted(), tail = (1 - level) / 2
        func quantile(_ q: Double) -> Double {
            let h = q * Double(sorted.count - 1), i = Int(h.rounded(.down)), fraction = h - Double(i)
            return i + 1 < sorted.count ? sorted[i] + fraction * (sorted[i + 1] - sorted[i]) : sorted[i]
        }
        return Interval(low: quantile(tail), high: quantile(1 - tail))
    }

    /// The power-law fits of `resamples` bootstrap samples of the points (C, y), drawn from `generator`
    /// (one fixed stream per fit, so an analysis is reproducible); resamples with no fit are skipped.
    static func fits(flops: [Double], values: [Double], resamples: Int = resamples,
                     generator: RandomGenerator) -> [ScalingAnalysis.PowerLawFit] {
        var generator = generator
        var fits: [ScalingAnalysis.PowerLawFit] = []
        for _ in 0..<resamples {
            let picks = flops.indices.map { _ in generator.nextInt(below: flops.count) }
            if let fit = try? ScalingAnalysis.fit(flops: picks.map { flops[$0] }, values: picks.map { values[$0] }) { fits.append(fit) }
        }
        return fits
    }
}

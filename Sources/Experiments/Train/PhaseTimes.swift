// Where a run's wall-clock time goes, by phase: preparing the data (tokenizer, images through the
// autoencoder; both cached across runs), the training steps, checkpoints, and each part of an
// evaluation (sampling images, decoding them, scoring them, the understanding tasks, perplexity).
// A run logs the seconds of each phase since its previous row under time/, one row per evaluation,
// so the rows of a run sum to its time, resumed processes included (work lost to a kill is not counted).
import Foundation

final class PhaseTimes {
    /// The phases in the order they are logged (time/seconds_NAME).
    static let phases = ["data", "training", "checkpoints", "eval_sampling", "eval_decoding", "eval_image_metrics",
                         "eval_understanding", "eval_perplexity"]

    private var seconds: [String: Double] = [:]

    /// Runs `body`, adding its wall-clock time to `phase`.
    func measure<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        let started = DispatchTime.now().uptimeNanoseconds
        defer { add(phase, seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9) }
        return try body()
    }

    /// Adds `seconds` measured by the caller to `phase`.
    func add(_ phase: String, seconds: Double) {
        precondition(Self.phases.contains(phase), "unknown phase \(phase)")
        self.seconds[phase, default: 0] += seconds
    }

    /// The seconds of every phase since the last call (a row of time/), and starts counting afresh.
    func takeRow() -> [(String, Double)] {
        defer { seconds = [:] }
        return Self.phases.map { ("seconds_\($0)", seconds[$0] ?? 0) }
    }
}

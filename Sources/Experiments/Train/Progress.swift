// Progress of a run: on a terminal one live line (step/total, losses, tokens/s, ETA) rewritten in
// place; when output is a file or a pipe, plain lines at each log step instead, so logs stay readable.
import Foundation
import Fusion

final class Progress {
    let total: Int
    /// A launcher (mpirun) hands rank 0 a pseudo-terminal even when its own output is a file: plain lines then.
    let isTerminal = isatty(STDOUT_FILENO) != 0 && !Communicator.launched(environment: ProcessInfo.processInfo.environment)
    private let started = Date()
    private var trainingStarted = Date()
    private var startStep = 0
    private var liveLineShown = false

    /// Whether this process prints at all: in a data-parallel run, rank 0 alone speaks for the run.
    let speaks: Bool

    init(total: Int, speaks: Bool = true) {
        self.total = total
        self.speaks = speaks
    }

    /// A line of its own (ends any live line first).
    func say(_ message: String) {
        guard speaks else { return }
        if liveLineShown { print(""); liveLineShown = false }
        print(message)
        fflush(stdout)
    }

    /// Marks the start of the training loop (at `step`, > 0 when resumed), for the ETA.
    func beginTraining(at step: Int) {
        startStep = step
        trainingStarted = Date()
    }

    /// Seconds since `beginTraining`.
    var trainingSeconds: Double { Date().timeIntervalSince(trainingStarted) }

    func update(step: Int, values: [(String, Double)], tokensPerSecond: Double) {
        guard speaks else { return }
        let elapsed = Date().timeIntervalSince(trainingStarted)
        let done = Double(step - startStep)
        let eta = done > 0 ? elapsed / done * Double(total - step) : 0
        let shown = values.filter { ["loss", "text_loss", "image_loss"].contains($0.0) }
            .map { "\($0.0) \(String(format: "%.4f", $0.1))" }.joined(separator: "  ")
        let line = String(format: "step %d/%d  %@  %.0f tok/s  ETA %@", step, total, shown, tokensPerSecond, Self.duration(eta))
        if isTerminal {
            print("\r\u{1B}[2K" + line, terminator: "")
            liveLineShown = true
        } else {
            print(line)
        }
        fflush(stdout)
    }

    /// Progress of a long evaluation (a count of items done).
    func evaluating(_ what: String, done: Int, of total: Int) {
        guard isTerminal && speaks else { return }
        print("\r\u{1B}[2K  evaluating \(what): \(done)/\(total)", terminator: "")
        liveLineShown = true
        fflush(stdout)
    }

    func finish() {
        say(String(format: "done in %@", Self.duration(Date().timeIntervalSince(started))))
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}

// What a local sweep shows while its runs train: the runs done of those it started with, each running
// run's step/total and loss (read from the last progress line of its output.txt), and the sweep's ETA
// from the share of steps done so far. On a terminal, one line rewritten in place each second; to a
// file or a pipe, a plain line every 30 s, so a log stays readable.
import Foundation
import Fusion

final class SweepProgress {
    /// Runs this invocation trains.
    let total: Int
    let isTerminal: Bool
    private let interval: Double
    private let started: Date
    private var finished = 0
    private var lastShown = Date.distantPast
    private var liveLineShown = false

    init(total: Int, isTerminal: Bool = isatty(STDOUT_FILENO) != 0, started: Date = Date()) {
        self.total = total
        self.isTerminal = isTerminal
        interval = isTerminal ? 1 : 30
        self.started = started
    }

    /// A run ended (finished, failed or interrupted): it counts as done for the ETA.
    func runEnded() { finished += 1 }

    /// A line of its own (ends the live line first).
    func say(_ message: String) {
        if liveLineShown { print(""); liveLineShown = false }
        print(message)
        fflush(stdout)
    }

    /// Shows the status of `running` (name, output file) when the last one is `interval` old.
    func show(running: [(name: String, output: String)]) {
        guard Date().timeIntervalSince(lastShown) >= interval else { return }
        lastShown = Date()
        var line = statusLine(running: running.map { ($0.name, Self.lastStep(inFile: $0.output)) }, now: Date())
        if isTerminal {
            var size = winsize()
            if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 10, line.count >= Int(size.ws_col) {
                line = String(line.prefix(Int(size.ws_col) - 2)) + "…"  // a wrapped line could not be rewritten in place
            }
            print("\r\u{1B}[2K" + line, terminator: "")
            liveLineShown = true
        } else {
            print(line)
        }
        fflush(stdout)
    }

    /// "sweep: 1/3 runs done  a step 40/200 loss 5.1234  b starting  ETA 12m30s". The ETA assumes the
    /// rest goes at the pace so far: elapsed × (runs left ÷ runs done), counting a running run by its
    /// share of steps done.
    func statusLine(running: [(name: String, step: ProgressLine?)], now: Date) -> String {
        var done = Double(finished)
        var parts = ["sweep: \(finished)/\(total) runs done"]
        for (name, step) in running {
            guard let step else { parts.append("\(name) starting"); continue }
            done += Double(step.step) / Double(max(step.total, 1))
            parts.append("\(name) step \(step.step)/\(step.total)" + (step.loss.map { " loss \($0)" } ?? ""))
        }
        let elapsed = now.timeIntervalSince(started)
        parts.append("ETA " + (done > 0 ? Progress.duration(elapsed * (Double(total) - done) / done) : "…"))
        return parts.joined(separator: "  ")
    }

    /// A training progress line as `fusion train` prints it to a file: "step 40/200  loss 5.1234  …".
    struct ProgressLine: Equatable {
        let step: Int
        let total: Int
        let loss: String?

        init(step: Int, total: Int, loss: String?) {
            (self.step, self.total, self.loss) = (step, total, loss)
        }

        init?(_ line: Substring) {
            let line = line.hasPrefix("\u{1B}[2K") ? line.dropFirst(4) : line  // a terminal's live line, erased and rewritten
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count >= 2, words[0] == "step" else { return nil }
            let fraction = words[1].split(separator: "/")
            guard fraction.count == 2, let step = Int(fraction[0]), let total = Int(fraction[1]), total > 0 else { return nil }
            let loss = words.firstIndex(of: "loss").flatMap { $0 + 1 < words.count ? String(words[$0 + 1]) : nil }
            self.init(step: step, total: total, loss: loss)
        }
    }

    /// The last progress line in the final 16 KiB of `path`, or nil (no file yet, or no step logged yet).
    static func lastStep(inFile path: String) -> ProgressLine? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let end = try? handle.seekToEnd() else { return nil }
        try? handle.seek(toOffset: end > 16_384 ? end - 16_384 : 0)
        guard let data = try? handle.readToEnd() else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        return text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).reversed().lazy.compactMap(ProgressLine.init).first
    }
}

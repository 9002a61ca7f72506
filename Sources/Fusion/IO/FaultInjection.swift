// A hook for the fault-injection tests: with FUSION_FAULT=POINT[#N][:SIGNAL] in the environment, the
// process sends itself SIGNAL (KILL by default; TERM or INT) the N-th time (the first by default) it
// reaches the named point, so that a test can kill a run at an exact moment of its life (while its log
// is created, inside a checkpoint write, just after the rename, …) and check that `--resume` repairs
// it. Several comma-separated faults may be armed at once ("train.step#3:INT,train.step#3:INT": Ctrl-C
// pressed twice). Without the variable, `reach` returns at once.
import Foundation

public enum FaultInjection {
    /// The environment variable that arms the hook.
    public static let variable = "FUSION_FAULT"

    private final class Fault {
        let point: String, occurrence: Int, signal: Int32
        var timesReached = 0
        init(point: String, occurrence: Int, signal: Int32) { (self.point, self.occurrence, self.signal) = (point, occurrence, signal) }
    }

    nonisolated(unsafe) private static let faults: [Fault] = {
        guard let text = ProcessInfo.processInfo.environment[variable], !text.isEmpty else { return [] }
        return text.split(separator: ",").compactMap { parse($0, in: text) }
    }()

    private static func parse(_ text: Substring, in whole: String) -> Fault? {
        var spec = text, signal = SIGKILL
        if let colon = spec.lastIndex(of: ":") {
            switch spec[spec.index(after: colon)...] {
            case "KILL": signal = SIGKILL
            case "TERM": signal = SIGTERM
            case "INT": signal = SIGINT
            default: return ignored(whole, "the signal after ':' must be KILL, TERM or INT")
            }
            spec = spec[..<colon]
        }
        var occurrence = 1
        if let hash = spec.lastIndex(of: "#") {
            guard let n = Int(spec[spec.index(after: hash)...]), n >= 1 else {
                return ignored(whole, "the count after '#' must be a whole number ≥ 1")
            }
            occurrence = n
            spec = spec[..<hash]
        }
        return Fault(point: String(spec), occurrence: occurrence, signal: signal)
    }

    private static func ignored(_ text: String, _ reason: String) -> Fault? {
        FileHandle.standardError.write(Data("fusion: \(variable)=\(text) ignored: \(reason)\n".utf8))
        return nil
    }

    /// Marks that the process has reached `point` (e.g. "checkpoint.renamed").
    public static func reach(_ point: String) {
        for fault in faults where fault.point == point {
            fault.timesReached += 1
            if fault.timesReached == fault.occurrence { kill(getpid(), fault.signal) }
        }
    }
}

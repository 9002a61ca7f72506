// Where a result came from: git commit, machine and library versions, written into every log so that
// a number can always be traced back to the code and the machine that produced it.
import Foundation
import Fusion

enum Provenance {
    /// The commit of the working tree (with "+dirty" when it has uncommitted changes), or "unknown"
    /// outside a git checkout.
    static var gitCommit: String {
        guard let commit = run("git", ["rev-parse", "HEAD"]) else { return "unknown" }
        let dirty = (run("git", ["status", "--porcelain", "--untracked-files=no"]) ?? "").isEmpty ? "" : "+dirty"
        return commit + dirty
    }

    static var machine: String {
        let info = ProcessInfo.processInfo
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown CPU"
        return "\(info.hostName); \(cpu ?? "unknown CPU"); \(info.activeProcessorCount) cores; "
            + String(format: "%.0f GiB", Double(info.physicalMemory) / 1_073_741_824)
    }

    static var versions: String {
        #if compiler(>=6.3)
        let swift = "Swift ≥ 6.3"
        #else
        let swift = "Swift < 6.3"
        #endif
        return "\(swift); OpenBLAS \(BLAS.configuration); HDF5 \(HDF5File.libraryVersion); Fusion log schema \(RunLog.schemaVersion)"
    }

    private static func run(_ tool: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

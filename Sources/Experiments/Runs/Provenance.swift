// Where a result came from: git commit, machine and library versions, written into every log so that
// a number can always be traced back to the code and the machine that produced it.
import Foundation
import Fusion

enum Provenance {
    /// The commit of the checkout this program was built in (`SourceRevision`, +dirty for uncommitted changes).
    static var gitCommit: String { SourceRevision.gitCommit }

    static var machine: String {
        let info = ProcessInfo.processInfo
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown CPU"
        return "\(info.hostName); \(cpu); \(info.activeProcessorCount) cores; "
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
}

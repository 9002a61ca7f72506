// The built `fusion` executable, run as a user runs it: for the tests of the command line.
import XCTest
import Foundation
import Fusion

/// What a run of `fusion` printed and how it ended.
struct CommandResult {
    /// The exit status, or the signal's number when a signal ended it.
    let status: Int32
    /// stdout and stderr together.
    let output: String
    /// The signal that ended the process (a kill, or a trap), if one did.
    var signal: Int32? = nil
}

enum FusionBinary {
    /// The products folder: beside the xctest executable on Linux, beside the bundle elsewhere.
    static func executable() throws -> URL {
        let bundle = Bundle(for: CommandLineTests.self).bundleURL
        let candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(), bundle,
                          bundle.deletingLastPathComponent()].map { $0.appendingPathComponent("fusion") }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw XCTSkip("fusion is not built beside the tests (looked at \(candidates.map(\.path))); build every product first (scripts/test does)")
        }
        return found
    }

    /// Runs `fusion` with `arguments`, the test's environment plus `environment`.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
        try runProgram(executable().path, arguments, environment: environment)
    }
}

/// Runs a program to its end (stdin /dev/null), stdout and stderr together.
func runProgram(_ path: String, _ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
    let result = try ChildProcess.run(path, arguments, environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
    return CommandResult(status: result.ending.signal ?? result.ending.status, output: result.text, signal: result.ending.signal)
}

extension XCTestCase {
    /// A new directory under the system's temporary one, removed when the test ends. Its name is kept
    /// short: the Slurm tests put a cluster's sockets under it.
    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "fusion-\(String(describing: type(of: self)))-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}

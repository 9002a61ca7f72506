// The built `fusion` executable, run as a user runs it: for the tests of the command line.
import XCTest
import Foundation

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

/// Runs a program, stdout and stderr together, read to the end. Spawned and waited for with
/// posix_spawn and waitpid rather than Foundation's Process: in a test process that has run many others,
/// Process.waitUntilExit was seen to wait forever on a child that had long exited (left a zombie).
func runProgram(_ path: String, _ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
    struct SpawnFailed: Error, CustomStringConvertible { let description: String }
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw SpawnFailed(description: "pipe: \(String(cString: strerror(errno)))") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    posix_spawn_file_actions_addclose(&actions, fds[1])
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
    close(fds[1])
    guard spawned == 0 else {
        close(fds[0])
        throw SpawnFailed(description: "cannot run \(path): \(String(cString: strerror(spawned)))")
    }
    var output = Data(), buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = read(fds[0], &buffer, buffer.count)
        if count > 0 { output.append(buffer, count: count) } else if count == 0 || errno != EINTR { break }
    }
    close(fds[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let signal = status & 0x7f
    return CommandResult(status: signal == 0 ? (status >> 8) & 0xff : signal, output: String(decoding: output, as: UTF8.self),
                         signal: signal == 0 ? nil : signal)
}

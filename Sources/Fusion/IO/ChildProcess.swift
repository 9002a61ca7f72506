// Other programs run from Fusion (its own binary from a sweep, git, sbatch, the peers, and the tools the
// tests compare against): started with posix_spawn and waited for with waitpid. Not Foundation's
// Process: in a process that had started many children, its waitUntilExit was seen to wait forever for
// one that had long exited (left as a zombie), and a child of Process inherits standard input, which a
// run without a terminal may have closed (mpirun then reads from whatever file took descriptor 0).
import Foundation

public struct ChildProcess {
    /// Where one of the child's output streams goes.
    public enum Destination {
        /// This process's own stream.
        case inherited
        /// Discarded (/dev/null).
        case discarded
        /// Appended to a file, created if missing.
        case file(String)
    }

    /// How a child ended: its exit status, or the signal that killed it.
    public struct Ending: Equatable, Sendable {
        public let status: Int32
        public let signal: Int32?
        public var succeeded: Bool { status == 0 && signal == nil }
        /// "status N" or "signal N", for messages.
        public var description: String { signal.map { "signal \($0)" } ?? "status \(status)" }

        init(waitStatus: Int32) {
            let signal = waitStatus & 0x7f
            self.signal = signal == 0 ? nil : signal
            status = signal == 0 ? (waitStatus >> 8) & 0xff : 128 + signal
        }
    }

    /// What `run` gives back: how the child ended and what it wrote (stdout, with stderr unless sent elsewhere).
    public struct Result: Sendable {
        public let ending: Ending
        public let output: Data
        public var text: String { String(decoding: output, as: UTF8.self) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public let pid: pid_t

    /// Starts `path` (an absolute path, or a name looked up on PATH) with `arguments`. Standard input is
    /// /dev/null; `environment` replaces this process's (nil: inherit it).
    public static func start(_ path: String, _ arguments: [String], environment: [String: String]? = nil,
                             standardOutput: Destination = .inherited, standardError: Destination = .inherited) throws -> ChildProcess {
        try start(path, arguments, environment: environment, output: standardOutput, errors: standardError, capture: nil)
    }

    /// Runs `path` to its end and returns what it printed: stdout, and stderr too unless `standardError`
    /// sends it elsewhere (nil: captured with stdout).
    public static func run(_ path: String, _ arguments: [String], environment: [String: String]? = nil,
                           standardError: Destination? = nil) throws -> Result {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw Failure(description: "cannot run \(path): pipe: \(String(cString: strerror(errno)))") }
        let child: ChildProcess
        do {
            child = try start(path, arguments, environment: environment, output: .inherited, errors: standardError ?? .inherited,
                              capture: (fds[1], fds[0], mergeErrors: standardError == nil))
        } catch {
            close(fds[0]); close(fds[1])
            throw error
        }
        close(fds[1])
        var output = Data(), buffer = [UInt8](repeating: 0, count: 65_536)
        while true {  // to the end before waiting: a child filling the pipe would otherwise never exit
            let count = read(fds[0], &buffer, buffer.count)
            if count > 0 { output.append(buffer, count: count) } else if count == 0 || errno != EINTR { break }
        }
        close(fds[0])
        return Result(ending: child.wait(), output: output)
    }

    private static func start(_ path: String, _ arguments: [String], environment: [String: String]?, output: Destination,
                              errors: Destination, capture: (write: Int32, read: Int32, mergeErrors: Bool)?) throws -> ChildProcess {
        guard let executable = path.contains("/") ? path : locate(path) else {
            throw Failure(description: "\(path) is not on PATH")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        func direct(_ destination: Destination, to descriptor: Int32) {
            switch destination {
            case .inherited: break
            case .discarded: posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", O_WRONLY, 0)
            case .file(let file): posix_spawn_file_actions_addopen(&actions, descriptor, file, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            }
        }
        if let capture {
            posix_spawn_file_actions_adddup2(&actions, capture.write, 1)
            if capture.mergeErrors { posix_spawn_file_actions_adddup2(&actions, capture.write, 2) } else { direct(errors, to: 2) }
            posix_spawn_file_actions_addclose(&actions, capture.read)
            posix_spawn_file_actions_addclose(&actions, capture.write)
        } else {
            direct(output, to: 1)
            direct(errors, to: 2)
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let variables = environment ?? ProcessInfo.processInfo.environment
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard spawned == 0 else { throw Failure(description: "cannot run \(executable): \(String(cString: strerror(spawned)))") }
        return ChildProcess(pid: pid)
    }

    /// The first executable `name` on PATH, then in /usr/bin and /bin.
    public static func locate(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        return (path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin"]).map { "\($0)/\(name)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Waits for the child to end.
    public func wait() -> Ending {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return Ending(waitStatus: status)
    }

    /// How the child ended, or nil while it runs (it is reaped when it has ended: ask once).
    public func poll() -> Ending? {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid ? Ending(waitStatus: status) : nil
    }

    /// Waits at most `seconds` for the child to end; nil if it still runs.
    public func wait(seconds: Double) -> Ending? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let ending = poll() { return ending }
            usleep(10_000)
        }
        return poll()
    }

    /// Sends `signal` to the child.
    public func send(_ signal: Int32) { kill(pid, signal) }
}

// The commit a program was built from, for the provenance every log and result file records.
//
// SwiftPM builds into <checkout>/.build, so the checkout that holds the running executable is the code
// it was built from (as of its last build). Asking git in the working directory instead, as before,
// named whatever repository a run happened to be started in, or "unknown" when started elsewhere.
import Foundation

public enum SourceRevision {
    /// HEAD of the checkout holding this executable, with "+dirty" when tracked files have uncommitted
    /// changes, or "unknown" outside a git checkout. Computed once per process.
    public static let gitCommit: String = {
        let executable = Bundle.main.executablePath ?? CommandLine.arguments[0]
        return commit(containing: URL(fileURLWithPath: executable).deletingLastPathComponent().path)
    }()

    /// HEAD (+dirty) of the git checkout containing `directory`, or "unknown".
    public static func commit(containing directory: String) -> String {
        guard let head = git(["rev-parse", "HEAD"], in: directory) else { return "unknown" }
        let changes = git(["status", "--porcelain", "--untracked-files=no"], in: directory) ?? ""
        return head + (changes.isEmpty ? "" : "+dirty")
    }

    /// git's trimmed standard output, or nil when git is missing or fails.
    private static func git(_ arguments: [String], in directory: String) -> String? {
        guard let result = try? ChildProcess.run("/usr/bin/env", ["git", "-C", directory] + arguments, standardError: .discarded),
              result.ending.succeeded else { return nil }
        return result.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

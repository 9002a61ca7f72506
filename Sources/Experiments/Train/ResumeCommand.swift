// The command that continues a stopped run, printed when a run is interrupted or diverges: the user's own
// command line with `--resume` (and, after a divergence, the changed key and its `--allow-change`), so the
// advice can be pasted as it is.
struct ResumeCommand {
    let arguments: [String]

    /// `command`: the arguments as the user typed them (CommandLine.arguments), or a description.
    init(_ arguments: [String]) { self.arguments = arguments }

    /// The command with `--resume`, without `--overwrite`.
    var resuming: String { resuming(with: [], allowing: []) }

    /// The command with `overrides` (replacing any of the same key), `--resume`, and `--allow-change` for `allowing`.
    func resuming(with overrides: [String], allowing: [String]) -> String {
        let replaced = Set(overrides.compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) })
        var words = arguments.filter { word in
            guard word != "--overwrite", word != "--resume" else { return false }
            guard let key = word.split(separator: "=", maxSplits: 1).first, word.contains("=") else { return true }
            return !replaced.contains(String(key))
        }
        words += overrides + ["--resume"]  // positional overrides may follow the options
        for key in allowing where !Self.allows(words, key) { words += ["--allow-change", key] }
        return words.map(Self.quoted).joined(separator: " ")
    }

    private static func allows(_ words: [String], _ key: String) -> Bool {
        zip(words, words.dropFirst()).contains { $0 == "--allow-change" && $1 == key } || words.contains("--allow-change=\(key)")
    }

    /// A word as a POSIX shell reads it back: as it is when plain, else in single quotes.
    private static func quoted(_ word: String) -> String {
        let plain = word.allSatisfy { $0.isLetter || $0.isNumber || "-_./=,:+@%".contains($0) }
        return plain && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

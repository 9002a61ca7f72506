// The text-only documents of an experiment (`data.text`), split into training and held-out documents
// (text_ppl is measured on the held-out ones):
// - `shakespeare` (the default): the plays, split as ShakespeareCorpus says;
// - a folder: every `*.txt` file is one document, named by its file name without `.txt`, read and cleaned
//   as a play is (ShakespeareCorpus.clean), and split by the same rule over the names in byte order;
// - a `.jsonl` file: one {"text": "…"} per line (optionally "split": "train" or "test", on all lines or
//   none), split by the same rule over the line order when no line names its split.
// The rule holds out document i when i % 10 == 5; with fewer than 6 documents, the last one.
import Foundation
import Fusion

struct TextCorpus {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static let builtIn = "shakespeare"

    let training: [(name: String, text: String)]
    let heldOut: [(name: String, text: String)]

    var trainingText: String { training.map(\.text).joined(separator: "\n\n") }
    var heldOutText: String { heldOut.map(\.text).joined(separator: "\n\n") }

    static func load(_ source: String) throws -> TextCorpus {
        if source == builtIn {
            let corpus = try ShakespeareCorpus.load()
            return TextCorpus(training: corpus.trainingPlays, heldOut: corpus.heldOutPlays)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
            throw Failure(description: "data.text: \(source) does not exist; give a folder of .txt files, a .jsonl file of "
                          + "{\"text\": …} lines, or \(builtIn) for the built-in plays")
        }
        if isDirectory.boolValue { return try folder(source) }
        guard source.hasSuffix(".jsonl") else {
            throw Failure(description: "data.text: \(source) is a file but not .jsonl; give a folder of .txt files or a .jsonl file")
        }
        return try jsonLines(source)
    }

    /// Whether document `index` of `count` is held out when no split is given.
    static func isHeldOut(index: Int, count: Int) -> Bool {
        count < 6 ? index == count - 1 : ShakespeareCorpus.isHeldOut(index: index)
    }

    private static func folder(_ directory: String) throws -> TextCorpus {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(".txt") }.map { String($0.dropLast(4)) }
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        guard names.count >= 2 else {
            throw Failure(description: "data.text: \(directory) holds \(names.count) .txt file(s); it needs at least 2 (one is held out for text_ppl)")
        }
        var documents: [(name: String, text: String)] = []
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name + ".txt")
            guard let data = FileManager.default.contents(atPath: path) else {
                throw Failure(description: "data.text: \(path) cannot be read")
            }
            guard let raw = String(data: data, encoding: .utf8) else {
                throw Failure(description: "data.text: \(path) is not UTF-8 text")
            }
            let text = ShakespeareCorpus.clean(raw)
            guard !text.isEmpty else { throw Failure(description: "data.text: \(path) holds no text") }
            documents.append((name, text))
        }
        return split(documents, heldOut: documents.indices.map { isHeldOut(index: $0, count: documents.count) })
    }

    private static func jsonLines(_ path: String) throws -> TextCorpus {
        guard let data = FileManager.default.contents(atPath: path), let content = String(data: data, encoding: .utf8) else {
            throw Failure(description: "data.text: \(path) cannot be read as UTF-8 text")
        }
        var documents: [(name: String, text: String)] = [], splits: [String?] = []
        for entry in try JSONLines.records(content, path: path, keys: ["text", "split"], example: "{\"text\": \"…\"}") {
            guard let text = entry.object["text"] as? String, !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw entry.failure("\"text\" must be a non-empty string")
            }
            let split = try entry.split()
            if let first = splits.first, (first == nil) != (split == nil) {
                throw entry.failure("give \"split\" on all lines or none")
            }
            documents.append(("line \(entry.line)", text))
            splits.append(split)
        }
        guard documents.count >= 2 else {
            throw Failure(description: "data.text: \(path) holds \(documents.count) document(s); it needs at least 2 (one is held out for text_ppl)")
        }
        let heldOut = splits[0] != nil ? splits.map { $0 == "test" } : documents.indices.map { isHeldOut(index: $0, count: documents.count) }
        guard heldOut.contains(true), heldOut.contains(false) else {
            throw Failure(description: "data.text: \(path) needs at least one \"train\" and one \"test\" line")
        }
        return split(documents, heldOut: heldOut)
    }

    private static func split(_ documents: [(name: String, text: String)], heldOut: [Bool]) -> TextCorpus {
        TextCorpus(training: documents.indices.filter { !heldOut[$0] }.map { documents[$0] },
                   heldOut: documents.indices.filter { heldOut[$0] }.map { documents[$0] })
    }
}

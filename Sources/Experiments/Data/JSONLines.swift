// JSON Lines (one JSON object per line), the format of image manifests and of text files of your own
// data: every line read and checked the same way, each error naming the file and the line.
import Foundation

enum JSONLines {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// One non-blank line's object.
    struct Record {
        let path: String
        /// 1-based, counting blank lines.
        let line: Int
        let object: [String: Any]

        /// An error about this record: "PATH:LINE: reason".
        func failure(_ reason: String) -> Failure { Failure(description: "\(path):\(line): \(reason)") }

        /// Its optional "split": nil, "train" or "test".
        func split() throws -> String? {
            guard let value = object["split"] else { return nil }
            guard let name = value as? String, name == "train" || name == "test" else {
                throw failure("\"split\" must be \"train\" or \"test\", not \(value)")
            }
            return name
        }
    }

    /// The objects of `text` (read from `path`), blank lines skipped; a line that is not a JSON object,
    /// or that has a key outside `keys`, is refused (a misspelt key must not be silently ignored).
    /// `example` shows a valid line in the error.
    static func records(_ text: String, path: String, keys: Set<String>, example: String) throws -> [Record] {
        var records: [Record] = []
        // Split on the scalar: as Characters, a Windows line end "\r\n" is one character and never equals "\n".
        for (offset, raw) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = String(raw).trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any]
            let record = Record(path: path, line: offset + 1, object: object ?? [:])
            guard object != nil else { throw record.failure("not a JSON object; each line is one \(example)") }
            let unknown = Set(record.object.keys).subtracting(keys)
            guard unknown.isEmpty else {
                throw record.failure("unknown key\(unknown.count == 1 ? "" : "s") \(unknown.sorted().joined(separator: ", ")); "
                                     + "a line has \(keys.sorted().joined(separator: ", "))")
            }
            records.append(record)
        }
        return records
    }
}

// Why a configuration was refused. Every message names the full dotted key, where the value came from
// (file:line:column or the override), and what would be accepted, so the fix is one edit.
import Foundation

enum ConfigError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read.
    case unreadableFile(path: String, reason: String)
    /// The YAML itself does not parse.
    case malformedYAML(source: String, line: Int?, column: Int?, problem: String)
    /// A key that the configuration does not have. `validKeys` are those at the same level.
    case unknownKey(key: String, origin: String, validKeys: [String])
    /// A value of the wrong kind (a string for a number, a scalar for a section, …).
    case wrongType(key: String, origin: String, expected: String, found: String)
    /// A value of the right type outside its allowed range (from `ConfigValidatable.validate()`).
    case outOfRange(key: String, value: String, requirement: String)
    /// An override that is not KEY=VALUE.
    case malformedOverride(String)
    /// An override of a key that does not exist. `validKeys` are those at that level.
    case overrideOfMissingKey(override: String, key: String, validKeys: [String])

    var description: String {
        switch self {
        case .unreadableFile(let path, let reason):
            return "config file '\(path)' could not be read: \(reason)"
        case .malformedYAML(let source, let line, let column, let problem):
            let position = line.map { ":\($0)" + (column.map { ":\($0)" } ?? "") } ?? ""
            return "\(source)\(position): malformed YAML: \(problem)"
        case .unknownKey(let key, let origin, let validKeys):
            return "\(origin): unknown config key '\(key)'; " + Self.validList(key, validKeys)
        case .wrongType(let key, let origin, let expected, let found):
            return "\(origin): config key '\(key)' expects \(expected), found \(found)"
        case .outOfRange(let key, let value, let requirement):
            return "config key '\(key)' is \(value), but it \(requirement)"
        case .malformedOverride(let text):
            return "override '\(text)' is not KEY=VALUE; write it as e.g. train.lr=3e-4 or model.layers=6"
        case .overrideOfMissingKey(let override, let key, let validKeys):
            return "override '\(override)': the config has no key '\(key)'; " + Self.validList(key, validKeys)
        }
    }

    /// "valid keys under 'model': dim, heads, layers (did you mean 'model.layers'?)"
    private static func validList(_ key: String, _ validKeys: [String]) -> String {
        let parts = key.split(separator: ".").map(String.init)
        let parent = parts.dropLast().joined(separator: ".")
        let level = parent.isEmpty ? "at the top level" : "under '\(parent)'"
        var text = "valid keys \(level): " + (validKeys.isEmpty ? "(none)" : validKeys.joined(separator: ", "))
        if let last = parts.last, let suggestion = closest(to: last, in: validKeys) {
            text += " (did you mean '\(parent.isEmpty ? suggestion : parent + "." + suggestion)'?)"
        }
        return text
    }

    /// The valid key nearest in edit distance (optimal string alignment: insertions, deletions,
    /// substitutions and swaps of neighbours), if near enough to be a typo (≤ a third of its length).
    static func closest(to key: String, in candidates: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
            for i in 0...a.count { d[i][0] = i }
            for j in 0...b.count { d[0][j] = j }
            for i in stride(from: 1, through: a.count, by: 1) {
                for j in stride(from: 1, through: b.count, by: 1) {
                    d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                    if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
                }
            }
            return d[a.count][b.count]
        }
        let scored = candidates.map { ($0, distance(Array(key), Array($0))) }.min { $0.1 < $1.1 }
        guard let (best, score) = scored, score > 0, score <= max(1, best.count / 3) else { return nil }
        return best
    }
}

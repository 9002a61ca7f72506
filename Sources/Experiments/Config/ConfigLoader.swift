// Strict YAML configurations with dotted `key=value` overrides, in the manner of Hydra / OmegaConf
// (`model.layers=6 recipe=showo train.lr=3e-4`), decoded into a `Configuration` struct with Yams.
//
// Resolution, each step strict:
//   1. the struct's defaults, encoded to a YAML tree: this tree is the set of valid keys;
//   2. the file's tree laid over it, section by section: a key the defaults lack is an error naming
//      the full dotted key, the file:line:column, and the valid keys at that level;
//   3. each override laid over the result: its key must exist; its value is parsed as YAML;
//   4. the tree decoded into the struct (a wrong type names the key and where the value came from),
//      then `validate()` (ranges).
// The resolved configuration prints as YAML (`yaml(_:)`) for the run's log, and decoding that text
// gives the same struct back.
import Foundation
import Yams

enum ConfigLoader {
    /// Loads `file` (nil: defaults only) and applies `overrides` ("key.sub=value").
    static func load<C: Configuration>(_ type: C.Type = C.self, file: String?, overrides: [String] = []) throws -> C {
        try load(type, yaml: file.map(readFile), source: file ?? "<defaults>", overrides: overrides)
    }

    /// The text of a config file. A directory, an unreadable file, and a file with no YAML in it (empty, or
    /// only comments: almost always the wrong file, and it would silently mean "every default") are errors;
    /// `{}` is how a file says "every default".
    static func readFile(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ConfigError.unreadableFile(path: path, reason: "no such file; check the path (e.g. configs/small.yaml)")
        }
        guard !isDirectory.boolValue else {
            throw ConfigError.unreadableFile(path: path, reason: "it is a directory; give a YAML config file inside it (e.g. configs/small.yaml)")
        }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigError.unreadableFile(path: path, reason: "it is not readable UTF-8 text (\((error as NSError).localizedFailureReason ?? "\(error)"))")
        }
        guard try compose(text, source: path) != nil else {
            throw ConfigError.unreadableFile(path: path, reason: "it holds no YAML (empty, or only comments); "
                                             + "write the keys it changes (e.g. recipe: showo), or {} for every default")
        }
        return text
    }

    /// Loads YAML text (nil: defaults only); `source` names it in errors (a path, or "<string>").
    /// `defaults` replaces `C()` as the base the file is laid over (e.g. a recipe preset's values).
    static func load<C: Configuration>(_ type: C.Type = C.self, yaml: String?, source: String = "<string>",
                                       overrides: [String] = [], defaults: C? = nil) throws -> C {
        var resolution = Resolution()
        var tree = try defaultsTree(defaults ?? C())
        if let yaml, let fileTree = try compose(yaml, source: source) {
            tree = try resolution.overlay(tree, fileTree, path: []) { mark in
                "\(source)" + (mark.map { ":\($0.line):\($0.column)" } ?? "")
            }
        }
        for override in overrides { tree = try resolution.apply(override: override, to: tree) }
        let config: C
        do { config = try YAMLDecoder().decode(C.self, from: tree) } catch let error as DecodingError {
            throw resolution.describe(error, in: tree)
        }
        try config.validate()
        return config
    }

    /// The resolved configuration as YAML text, keys in declaration order. Real numbers are written in
    /// Swift's shortest form that reads back to the same Double ("0.0003", "1.0"), where Yams writes
    /// 15-digit scientific ("3e-4", "1e+0"); the values are unchanged. (Yams keeps 15 significant
    /// digits, so a Double needing 16–17, such as 0.1 + 0.2, does not round-trip; typed values do.)
    static func yaml<C: Encodable>(_ config: C) throws -> String {
        let text = try YAMLEncoder().encode(config)
        guard let tree = try Yams.compose(yaml: text) else { return text }
        return try Yams.serialize(node: shortestReals(tree))
    }

    private static func shortestReals(_ node: Node) -> Node {
        switch node {
        case .scalar(let scalar):
            // Only reals as written ("3e-4", "5.0e-2"): not integers, even those too large for Int.
            let text = scalar.string.lowercased()
            guard scalar.style == .plain || scalar.style == .any, node.int == nil, !text.contains("x"),
                  text.contains(".") || text.contains("e"), let value = node.float, value.isFinite else { return node }
            // A Float field arrives widened to Double and cut to 15 digits ("0.100000001490116"): when the
            // value is a Float to within that cut, write the Float's shortest form ("0.1").
            let single = Float(value)
            if single.isFinite, abs(Double(single) - value) <= 1e-14 * abs(value) {
                return Node(String(describing: single), scalar.tag, scalar.style)
            }
            return Node(String(describing: value), scalar.tag, scalar.style)
        case .mapping(let mapping):
            return Node(mapping.map { ($0.key, shortestReals($0.value)) }, mapping.tag, mapping.style)
        case .sequence(let sequence):
            return Node(sequence.map(shortestReals), sequence.tag, sequence.style)
        case .alias:
            return node
        }
    }

    // MARK: Trees

    private static func defaultsTree<C: Configuration>(_ defaults: C) throws -> Node {
        guard let tree = try compose(yaml(defaults), source: "the defaults of \(C.self)"), tree.mapping != nil else {
            preconditionFailure("ConfigLoader: \(C.self)'s defaults do not encode to a mapping; a Configuration must be a struct of fields")
        }
        return tree
    }

    static func compose(_ text: String, source: String) throws -> Node? {
        do { return try Yams.compose(yaml: text) } catch let error as YamlError {
            switch error {
            case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
                 .composer(let context, let problem, let mark, _):
                let detail = context.map { "\(problem) (\($0.text) at line \($0.mark.line))" } ?? problem
                throw ConfigError.malformedYAML(source: source, line: mark.line, column: mark.column, problem: detail)
            case .duplicatedKeysInMapping(let duplicates, let context):
                throw ConfigError.malformedYAML(source: source, line: context.mark.line, column: context.mark.column,
                                                problem: "duplicate key\(duplicates.count == 1 ? "" : "s") " + duplicates.map { "'\($0)'" }.joined(separator: ", "))
            case .reader(let problem, let offset, _, _):
                throw ConfigError.malformedYAML(source: source, line: nil, column: nil,
                                                problem: problem + (offset.map { " at character \($0)" } ?? ""))
            default:
                throw ConfigError.malformedYAML(source: source, line: nil, column: nil, problem: "\(error)")
            }
        }
    }

    /// What a node is, for messages: 'text' for a scalar, "null", "a mapping", "a sequence".
    static func describe(_ node: Node?) -> String {
        switch node {
        case .scalar(let scalar)?:
            return node?.null != nil ? "null" : "'\(scalar.string)'"
        case .mapping?: return "a mapping"
        case .sequence?: return "a sequence"
        case .alias?: return "an alias"
        case nil: return "nothing"
        }
    }

    /// The node at a dotted path of mapping keys, if there is one.
    static func node(at path: [String], in tree: Node) -> Node? {
        var node: Node? = tree
        for key in path {
            if let index = Int(key), let sequence = node?.sequence, index < sequence.count {
                node = sequence[index]
            } else {
                node = node?.mapping?[key]
            }
        }
        return node
    }

    /// Every leaf of a resolved config as dotted key → value text ("train.learning_rate" → "0.001"), in
    /// file order; a sequence is one leaf. What two configs are compared by (a resume's changed keys).
    static func leaves(of yaml: String, source: String) throws -> [(key: String, value: String)] {
        var result: [(String, String)] = []
        func walk(_ node: Node, _ path: [String]) {
            if let mapping = node.mapping {
                for (key, value) in mapping { walk(value, path + [key.string ?? "?"]) }
            } else {
                let text = node.scalar?.string ?? ((try? Yams.serialize(node: node)) ?? "\(node)").trimmingCharacters(in: .whitespacesAndNewlines)
                result.append((path.joined(separator: "."), text))
            }
        }
        if let tree = try compose(yaml, source: source) { walk(tree, []) }
        return result
    }

    /// The keys of a mapping node, in order.
    static func keys(of node: Node?) -> [String] {
        node?.mapping?.keys.compactMap { $0.string } ?? []
    }

    // MARK: Resolution state

    /// Remembers where each value came from, for the messages of type errors.
    private struct Resolution {
        var origins: [String: String] = [:]  // dotted key → "file:line:column" or "override 'k=v'"

        /// Lays `incoming` over `base` at `path`: mappings merge key by key (every key must exist in
        /// `base`), anything else replaces the value (its type is checked when decoding).
        mutating func overlay(_ base: Node, _ incoming: Node, path: [String], origin: (Mark?) -> String) throws -> Node {
            let dotted = path.joined(separator: ".")
            guard let baseMapping = base.mapping else {
                origins[dotted] = origin(incoming.mark)
                return incoming
            }
            guard let incomingMapping = incoming.mapping else {
                throw ConfigError.wrongType(key: dotted.isEmpty ? "(top level)" : dotted, origin: origin(incoming.mark),
                                            expected: "a mapping with keys " + ConfigLoader.keys(of: base).joined(separator: ", "),
                                            found: ConfigLoader.describe(incoming))
            }
            var pairs = Array(baseMapping.map { ($0.key, $0.value) })
            for (keyNode, value) in incomingMapping {
                guard let key = keyNode.string, let index = pairs.firstIndex(where: { $0.0.string == key }) else {
                    let name = keyNode.string ?? ConfigLoader.describe(keyNode)
                    throw ConfigError.unknownKey(key: (path + [name]).joined(separator: "."), origin: origin(keyNode.mark),
                                                 validKeys: ConfigLoader.keys(of: base))
                }
                pairs[index].1 = try overlay(pairs[index].1, value, path: path + [key], origin: origin)
            }
            return Node(pairs, baseMapping.tag, baseMapping.style)
        }

        /// Applies one "key.sub=value" override.
        mutating func apply(override: String, to tree: Node) throws -> Node {
            guard let equals = override.firstIndex(of: "=") else { throw ConfigError.malformedOverride(override) }
            let key = String(override[..<equals]).trimmingCharacters(in: .whitespaces)
            let text = String(override[override.index(after: equals)...])
            let path = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !key.isEmpty, !path.contains(where: \.isEmpty) else { throw ConfigError.malformedOverride(override) }
            let value = try ConfigLoader.compose(text, source: "override '\(override)'") ?? Node("")
            return try set(value, at: path[...], in: tree, prefix: [], override: override)
        }

        private mutating func set(_ value: Node, at path: ArraySlice<String>, in node: Node, prefix: [String],
                                  override: String) throws -> Node {
            let key = path.first!
            guard let mapping = node.mapping, var pairs = Optional(Array(mapping.map { ($0.key, $0.value) })),
                  let index = pairs.firstIndex(where: { $0.0.string == key }) else {
                throw ConfigError.overrideOfMissingKey(override: override, key: (prefix + [key]).joined(separator: "."),
                                                       validKeys: ConfigLoader.keys(of: node))
            }
            if path.count == 1 {
                pairs[index].1 = try overlay(pairs[index].1, value, path: prefix + [key]) { _ in "override '\(override)'" }
            } else {
                pairs[index].1 = try set(value, at: path.dropFirst(), in: pairs[index].1, prefix: prefix + [key], override: override)
            }
            return Node(pairs, mapping.tag, mapping.style)
        }

        /// A decoding error as a ConfigError naming the dotted key, the value's origin and what was expected.
        func describe(_ error: DecodingError, in tree: Node) -> Error {
            func dotted(_ path: [CodingKey]) -> [String] { path.map { $0.intValue.map(String.init) ?? $0.stringValue } }
            func origin(_ path: [String]) -> String {
                // The value's own origin, or that of the nearest enclosing section that was replaced whole.
                for length in stride(from: path.count, through: 0, by: -1) {
                    if let origin = origins[path.prefix(length).joined(separator: ".")] { return origin }
                }
                return "defaults"
            }
            switch error {
            case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
                let path = dotted(context.codingPath)
                return ConfigError.wrongType(key: path.joined(separator: "."), origin: origin(path),
                                             expected: Self.expectation(type),
                                             found: ConfigLoader.describe(ConfigLoader.node(at: path, in: tree)))
            case .dataCorrupted(let context):
                let path = dotted(context.codingPath)
                return ConfigError.wrongType(key: path.joined(separator: "."), origin: origin(path),
                                             expected: context.debugDescription,
                                             found: ConfigLoader.describe(ConfigLoader.node(at: path, in: tree)))
            case .keyNotFound(let key, let context):
                let path = dotted(context.codingPath) + [key.stringValue]
                return ConfigError.wrongType(key: path.joined(separator: "."), origin: "defaults",
                                             expected: "a value (the defaults do not encode this key: give it a non-nil default)",
                                             found: "nothing")
            @unknown default:
                return error
            }
        }

        static func expectation(_ type: Any.Type) -> String {
            switch type {
            case is Int.Type, is Int32.Type, is Int64.Type: return "an integer"
            case is UInt.Type, is UInt32.Type, is UInt64.Type: return "a non-negative integer"
            case is Float.Type, is Double.Type: return "a number"
            case is Bool.Type: return "true or false"
            case is String.Type: return "a string"
            case is Node.Mapping.Type: return "a mapping (a section of keys)"
            case is Node.Sequence.Type: return "a sequence"
            case is Node.Scalar.Type: return "a single value"
            default: return "a value of type \(type)"
            }
        }
    }
}

// What a configuration type promises the strict loader (ConfigLoader): documented defaults, a range
// check, and named choices. In the manner of nanoGPT's configurator (unknown keys and type changes
// are refused) with mlx-swift-lm's Codable config structs.
import Foundation

/// A type whose values can be checked for ranges after decoding. Throw `ConfigError.outOfRange`
/// (`require` does) naming the key as it is written in YAML.
protocol ConfigValidatable {
    func validate() throws
}

/// A configuration: `Codable` with snake_case `CodingKeys`, `init()` giving the documented defaults of
/// every field (so a file may be partial), `validate()` for ranges. Every field must appear when the
/// defaults are encoded, as the loader learns the valid keys from them: give optional fields a
/// non-nil default (or an explicit `encode(nil)`), and use structs, not dictionaries, for sections.
/// Prefer `Double` to `Float` for real-valued fields: a Float is written widened ("0.000300000014…"),
/// correct but hard to read; convert at the point of use.
protocol Configuration: Codable, ConfigValidatable {
    init()
}

extension ConfigValidatable {
    /// Throws `ConfigError.outOfRange(key:value:requirement:)` unless `condition` holds; `requirement`
    /// completes "it …", e.g. "must be at least 1".
    func require(_ condition: Bool, _ key: String, _ value: Any, _ requirement: String) throws {
        guard condition else { throw ConfigError.outOfRange(key: key, value: "\(value)", requirement: requirement) }
    }

    /// Validates a nested section, reporting its keys with the section's prefix ("model.layers").
    func validate(section key: String, _ nested: ConfigValidatable) throws {
        do { try nested.validate() } catch ConfigError.outOfRange(let inner, let value, let requirement) {
            throw ConfigError.outOfRange(key: "\(key).\(inner)", value: value, requirement: requirement)
        }
    }
}

/// A field with a closed set of string values (e.g. `recipe: showo`); a value outside the set is an
/// error that lists the valid ones.
protocol ConfigChoice: CaseIterable, Codable, RawRepresentable where RawValue == String {}

extension ConfigChoice {
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = Self(rawValue: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription:
                "one of " + Self.allCases.map { $0.rawValue }.joined(separator: ", "))
        }
        self = value
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

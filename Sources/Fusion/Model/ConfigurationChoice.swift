// A configuration field with a closed set of string values (`image_objective: masked_tokens`). Decoding
// a value outside the set fails with the list of valid ones, which the config loader turns into an
// error naming the key: a typo in a YAML file is told what it could have been.

public protocol ConfigurationChoice: CaseIterable, Codable, RawRepresentable where RawValue == String {}

extension ConfigurationChoice {
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = Self(rawValue: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription:
                "one of " + Self.allCases.map(\.rawValue).joined(separator: ", "))
        }
        self = value
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    /// The valid values, for messages.
    public static var choices: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

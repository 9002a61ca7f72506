// Which positions of one packed sequence may attend to which: the one rule all three recipes share.
//
// A packed sequence holds several documents; inside a document attention is causal, except inside a
// bidirectional span (an image, for Show-o and Transfusion), whose positions also see each other.
// Attention never crosses a document boundary. Query i may attend key j when
//     doc[i] == doc[j]  and  ( j ≤ i  or  (span[i] ≥ 0 and span[i] == span[j]) ),
// and a padding position (doc = −1) attends only to itself, so that no softmax row is empty.

public struct AttentionMask: Equatable {
    /// Document of each position (T of them); −1 marks padding.
    public let documentIDs: [Int32]
    /// Bidirectional span of each position; −1 outside every span. Span ids are compared only within
    /// a document, so two documents may reuse the same id.
    public let spanIDs: [Int32]

    public var length: Int { documentIDs.count }

    public init(documentIDs: [Int32], spanIDs: [Int32]? = nil) {
        let spans = spanIDs ?? Array(repeating: -1, count: documentIDs.count)
        precondition(spans.count == documentIDs.count,
                     "AttentionMask: \(spans.count) span ids for \(documentIDs.count) positions")
        self.documentIDs = documentIDs
        self.spanIDs = spans
    }

    /// One causal document filling all T positions.
    public static func causal(length: Int) -> AttentionMask {
        AttentionMask(documentIDs: Array(repeating: 0, count: length))
    }

    public func allows(query i: Int, key j: Int) -> Bool {
        let document = documentIDs[i]
        if document < 0 { return i == j }
        guard documentIDs[j] == document else { return false }
        return j <= i || (spanIDs[i] >= 0 && spanIDs[i] == spanIDs[j])
    }

    /// The mask as an additive bias [T, T] (0 where allowed, −∞ elsewhere), written into `bias`.
    func writeBias(into bias: UnsafeMutablePointer<Float>) {
        let t = length
        for i in 0..<t {
            for j in 0..<t { bias[i * t + j] = allows(query: i, key: j) ? 0 : -.infinity }
        }
    }

    /// A picture of the mask, one row per query: "x" where it may attend, "." where not.
    public var picture: String {
        (0..<length).map { i in String((0..<length).map { allows(query: i, key: $0) ? "x" : "." }) }
            .joined(separator: "\n")
    }
}

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

    /// The keys each query may attend to as one interval per row, `lo[i]..<hi[i]`, when the mask is
    /// exactly that: every document one contiguous run of positions and every (document, span) pair one
    /// contiguous run inside it. Then row i allows [start of its document, max(i + 1, end of its span)),
    /// and a padding row [i, i + 1). Nil for any other layout (the attention kernel then falls back to
    /// the dense bias). O(T), so it is recomputed per call rather than cached.
    func keyIntervals() -> (lo: [Int32], hi: [Int32])? {
        let t = length
        var lo = [Int32](repeating: 0, count: t), hi = [Int32](repeating: 0, count: t)
        var finishedDocuments = Set<Int32>(), finishedSpans = Set<Int64>()
        var i = 0
        while i < t {
            let document = documentIDs[i]
            var end = i + 1
            while end < t && documentIDs[end] == document { end += 1 }
            if document < 0 {
                for p in i..<end { lo[p] = Int32(p); hi[p] = Int32(p + 1) }
            } else {
                guard finishedDocuments.insert(document).inserted else { return nil }
                finishedSpans.removeAll(keepingCapacity: true)
                var p = i
                while p < end {  // runs of equal span id inside the document
                    let span = spanIDs[p]
                    var spanEnd = p + 1
                    while spanEnd < end && spanIDs[spanEnd] == span { spanEnd += 1 }
                    if span >= 0 { guard finishedSpans.insert(Int64(span)).inserted else { return nil } }
                    for q in p..<spanEnd {
                        lo[q] = Int32(i)
                        hi[q] = Int32(span >= 0 ? spanEnd : q + 1)
                    }
                    p = spanEnd
                }
            }
            i = end
        }
        return (lo, hi)
    }

    /// A picture of the mask, one row per query: "x" where it may attend, "." where not.
    public var picture: String {
        (0..<length).map { i in String((0..<length).map { allows(query: i, key: $0) ? "x" : "." }) }
            .joined(separator: "\n")
    }
}

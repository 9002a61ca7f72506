import Foundation

// BPETokenizer: byte-level byte-pair encoding. BPE for subwords after Sennrich, Haddow & Birch 2016
// ("Neural Machine Translation of Rare Words with Subword Units", §3.2: repeatedly merge the most
// frequent adjacent pair of symbols within words); byte-level after Radford et al. 2019 (GPT-2, §2.2:
// the base alphabet is the 256 byte values, so every string tokenises and nothing is unknown).
//
// Vocabulary layout (V = vocabularySize):
//     0 ..< 256                 the bytes
//     256 ..< 256 + M           the merges, in training order (id 256 + r is merge r, of rank r)
//     256 + M ..< V             the special tokens, in SpecialToken.allCases order (V = 256 + M + 8)
//
// Text is first split into words by GPT-2's pattern (PreTokenizer.swift), so merges stay inside words.
// Training counts the distinct words once, then merges with incremental pair-count updates (only the
// words holding the merged pair are touched) and a lazy max-heap of pair counts. Ties between pairs
// of equal count go to the smaller (left id, right id), so training is deterministic.
// Encoding merges each word by rank (the lowest-ranked adjacent pair first, as GPT-2's encoder does),
// which reproduces the training segmentation, and caches the ids of each distinct word.
//
// Saved in HDF5 (see `write(to:)`) with the model, and read back strictly.

/// Tokens outside the text: sequence and image framing, masking, and the task markers of Show-o.
public enum SpecialToken: String, CaseIterable, Codable, Sendable {
    /// Begin / end of a document, padding.
    case bos, eos, pad
    /// Begin / end of an image.
    case boi, eoi
    /// The masked image token of Show-o's masked-token objective.
    case mask
    /// Task markers: text-to-image generation, multimodal understanding (image-to-text).
    case t2i, mmu

    /// How `decode` renders the token: "<boi>".
    public var rendered: String { "<\(rawValue)>" }
}

/// A malformed tokenizer in a file, or impossible training arguments; says what is wrong and what to do.
public struct BPETokenizerError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public var errorDescription: String? { description }
}

/// A trained byte-level BPE tokenizer. Thread-safe: `encode` guards its word cache with a lock.
public final class BPETokenizer: @unchecked Sendable {
    /// The number of byte tokens (ids 0..<256).
    public static let byteCount = 256
    /// The version of the HDF5 layout written by `write(to:)` and required by `read(from:)`.
    public static let formatVersion: Int64 = 1
    /// The `format` attribute that marks a group as a tokenizer.
    static let formatName = "fusion-byte-level-bpe"
    /// Names the pre-tokenisation rule; a tokenizer saved under another rule would encode differently.
    static let preTokenizerName = "gpt2"

    /// The merges in training order: merge r joins `merges[r].0` and `merges[r].1` into id 256 + r.
    public let merges: [(Int32, Int32)]
    /// Merged id of each pair, keyed by `pairKey(left, right)`; the id is also the merge's rank.
    private let mergedID: [UInt64: Int32]
    /// The bytes of every text token, ids 0..<textTokenCount.
    private let tokenBytes: [[UInt8]]

    private let cacheLock = NSLock()
    /// Ids of the words encoded so far (keys own their bytes); cleared when it reaches `cacheLimit`.
    private var cache: [ByteKey: [Int32]] = [:]
    private static let cacheLimit = 100_000

    /// Text tokens: bytes + merges; ids 0..<textTokenCount are text, the rest special.
    public var textTokenCount: Int { Self.byteCount + merges.count }
    /// Bytes + merges + specials; every id is in 0..<vocabularySize.
    public var vocabularySize: Int { textTokenCount + SpecialToken.allCases.count }

    /// A tokenizer with the given merges, which must each join two earlier tokens (checked by `read`).
    init(merges: [(Int32, Int32)]) {
        self.merges = merges
        var mergedID: [UInt64: Int32] = [:]
        var tokenBytes = (0..<Self.byteCount).map { [UInt8($0)] }
        for (rank, (left, right)) in merges.enumerated() {
            let id = Int32(Self.byteCount + rank)
            mergedID[pairKey(left, right)] = id
            tokenBytes.append(tokenBytes[Int(left)] + tokenBytes[Int(right)])
        }
        self.mergedID = mergedID
        self.tokenBytes = tokenBytes
    }

    // MARK: Special tokens

    /// The id of a special token (≥ textTokenCount).
    public func id(_ special: SpecialToken) -> Int32 {
        Int32(textTokenCount + SpecialToken.allCases.firstIndex(of: special)!)
    }

    /// The special token with this id, or nil for a text id.
    public func special(for id: Int32) -> SpecialToken? {
        let index = Int(id) - textTokenCount
        return SpecialToken.allCases.indices.contains(index) ? SpecialToken.allCases[index] : nil
    }

    // MARK: Training

    /// Learns merges from `texts` until the vocabulary (256 bytes + merges + 8 specials) has
    /// `vocabularySize` tokens, or no adjacent pair is left to merge (then it is smaller; check
    /// `vocabularySize`). `vocabularySize` must be at least 264 (the bytes and the specials).
    public static func train(texts: [String], vocabularySize: Int) -> BPETokenizer {
        let minimum = byteCount + SpecialToken.allCases.count
        precondition(vocabularySize >= minimum,
                     "BPETokenizer.train: vocabularySize \(vocabularySize) is too small; it counts the 256 bytes and "
                     + "the \(SpecialToken.allCases.count) special tokens, so it must be at least \(minimum)")
        let targetMerges = vocabularySize - minimum

        // Distinct words and how often each occurs. Keys are slices of the texts' byte arrays.
        var wordCounts: [ByteKey: Int] = [:]
        for text in texts {
            let bytes = Array(text.utf8)
            bytes.withUnsafeBufferPointer { buffer in
                PreTokenizer.forEachPiece(in: buffer) { range in
                    wordCounts[ByteKey(bytes: bytes[range]), default: 0] += 1
                }
            }
        }
        // Sorted so that the word indices (and so every later step) do not depend on hashing order.
        let sortedWords = wordCounts.sorted { $0.key.bytes.lexicographicallyPrecedes($1.key.bytes) }
        var words: [[Int32]] = sortedWords.map { $0.key.bytes.map { Int32($0) } }   // symbols of each word
        let counts: [Int] = sortedWords.map { $0.value }
        wordCounts = [:]

        // Pair counts over all words (weighted by word count), and the words each pair may occur in
        // (a superset: entries go stale when a merge removes the pair from a word, and are then skipped).
        var pairCounts: [UInt64: Int] = [:]
        var pairWords: [UInt64: [Int32]] = [:]
        for (w, symbols) in words.enumerated() where symbols.count > 1 {
            for i in 0..<(symbols.count - 1) {
                let key = pairKey(symbols[i], symbols[i + 1])
                pairCounts[key, default: 0] += counts[w]
                if pairWords[key]?.last != Int32(w) { pairWords[key, default: []].append(Int32(w)) }
            }
        }
        var heap = PairHeap()
        for (key, count) in pairCounts { heap.push(PairHeap.Entry(count: count, pair: key)) }

        var merges: [(Int32, Int32)] = []
        merges.reserveCapacity(targetMerges)
        var lastVisit = [Int](repeating: -1, count: words.count)   // merge index that last rewrote a word
        var touched: [UInt64: Int] = [:]                             // pair → count change in this merge
        while merges.count < targetMerges, let best = heap.pop() {
            // Lazy deletion: an entry is current only if its count is the pair's count now.
            guard let current = pairCounts[best.pair], current == best.count, current > 0 else { continue }
            let left = Int32(truncatingIfNeeded: best.pair >> 32), right = Int32(truncatingIfNeeded: best.pair)
            let merged = Int32(byteCount + merges.count)
            merges.append((left, right))
            touched.removeAll(keepingCapacity: true)

            for w in pairWords.removeValue(forKey: best.pair) ?? [] {
                let w = Int(w)
                if lastVisit[w] == merges.count { continue }
                lastVisit[w] = merges.count
                let old = words[w]
                var new: [Int32] = []
                new.reserveCapacity(old.count)
                var i = 0
                while i < old.count {
                    if i + 1 < old.count && old[i] == left && old[i + 1] == right {
                        new.append(merged)
                        i += 2
                    } else {
                        new.append(old[i])
                        i += 1
                    }
                }
                guard new.count != old.count else { continue }   // a stale entry: the pair is gone
                let count = counts[w]
                for i in 0..<(old.count - 1) { touched[pairKey(old[i], old[i + 1]), default: 0] -= count }
                for i in 0..<max(new.count - 1, 0) {
                    let key = pairKey(new[i], new[i + 1])
                    touched[key, default: 0] += count
                    // Pairs without the new token were adjacent before, so their lists hold w already.
                    if (new[i] == merged || new[i + 1] == merged) && pairWords[key]?.last != Int32(w) {
                        pairWords[key, default: []].append(Int32(w))
                    }
                }
                words[w] = new
            }
            for (key, change) in touched where change != 0 {
                let count = (pairCounts[key] ?? 0) + change
                if count > 0 {
                    pairCounts[key] = count
                    heap.push(PairHeap.Entry(count: count, pair: key))
                } else {
                    pairCounts[key] = nil
                }
            }
            pairCounts[best.pair] = nil
        }
        return BPETokenizer(merges: merges)
    }

    // MARK: Encoding and decoding

    /// The ids of `text`'s tokens: text ids only (< textTokenCount), never a special id, even for the
    /// literal string "<boi>".
    public func encode(_ text: String) -> [Int32] {
        let bytes = Array(text.utf8)
        var ids: [Int32] = []
        ids.reserveCapacity(bytes.count / 3 + 1)
        bytes.withUnsafeBufferPointer { buffer in
            PreTokenizer.forEachPiece(in: buffer) { range in
                let key = ByteKey(bytes: bytes[range])
                cacheLock.lock()
                let cached = cache[key]
                cacheLock.unlock()
                if let cached {
                    ids.append(contentsOf: cached)
                    return
                }
                let word = encodeWord(buffer, range)
                ids.append(contentsOf: word)
                cacheLock.lock()
                if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
                cache[ByteKey(bytes: ArraySlice(Array(bytes[range])))] = word   // owns its bytes
                cacheLock.unlock()
            }
        }
        return ids
    }

    /// One word's ids: start from its bytes, then repeatedly merge every occurrence of the adjacent
    /// pair with the lowest rank, until no adjacent pair is a merge.
    private func encodeWord(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> [Int32] {
        var symbols = bytes[range].map { Int32($0) }
        while symbols.count > 1 {
            var best: Int32 = .max, bestLeft: Int32 = 0, bestRight: Int32 = 0
            for i in 0..<(symbols.count - 1) {
                if let id = mergedID[pairKey(symbols[i], symbols[i + 1])], id < best {
                    best = id
                    bestLeft = symbols[i]
                    bestRight = symbols[i + 1]
                }
            }
            if best == .max { break }
            var write = 0, read = 0
            while read < symbols.count {
                if read + 1 < symbols.count && symbols[read] == bestLeft && symbols[read + 1] == bestRight {
                    symbols[write] = best
                    read += 2
                } else {
                    symbols[write] = symbols[read]
                    read += 1
                }
                write += 1
            }
            symbols.removeLast(symbols.count - write)
        }
        return symbols
    }

    /// The text of `ids`: the bytes of text tokens, special tokens as "<boi>" etc.; byte sequences that
    /// are not valid UTF-8 (a multi-byte character cut by the ids' boundaries) become U+FFFD.
    /// Every id must be in 0..<vocabularySize.
    public func decode(_ ids: [Int32]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids {
            precondition(id >= 0 && Int(id) < vocabularySize,
                         "BPETokenizer.decode: id \(id) is outside the vocabulary 0..<\(vocabularySize)")
            if Int(id) < textTokenCount {
                bytes.append(contentsOf: tokenBytes[Int(id)])
            } else {
                bytes.append(contentsOf: special(for: id)!.rendered.utf8)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The bytes of a text token (for inspection: `bytes(of: 300)` → the UTF-8 of " the").
    public func bytes(of id: Int32) -> [UInt8] {
        precondition(id >= 0 && Int(id) < textTokenCount, "BPETokenizer.bytes(of:): \(id) is not a text token id")
        return tokenBytes[Int(id)]
    }

    // MARK: Saving and loading

    /// Writes the tokenizer into `group` (usually a "tokenizer" group of a checkpoint):
    ///     attributes  format = "fusion-byte-level-bpe", format_version = 1, pretokenizer = "gpt2",
    ///                 vocabulary_size = V, merge_count = M,
    ///                 special_tokens = "bos,eos,pad,boi,eoi,mask,t2i,mmu" (their order = their ids)
    ///     merges      int32 [M, 2]: row r = (left id, right id) of merge r, which makes id 256 + r
    public func write(to group: HDF5Group) throws {
        try group.setAttribute("format", Self.formatName)
        try group.setAttribute("format_version", Self.formatVersion)
        try group.setAttribute("pretokenizer", Self.preTokenizerName)
        try group.setAttribute("vocabulary_size", vocabularySize)
        try group.setAttribute("merge_count", merges.count)
        try group.setAttribute("special_tokens", Self.specialTokenList)
        try group.createDataset("merges", values: merges.flatMap { [$0.0, $0.1] }, shape: [merges.count, 2])
    }

    static var specialTokenList: String { SpecialToken.allCases.map(\.rawValue).joined(separator: ",") }

    /// Reads a tokenizer written by `write(to:)`, checking the format, its version, the sizes, that every
    /// merge joins two earlier tokens and that no pair is merged twice; errors name the group and the fault.
    public static func read(from group: HDF5Group) throws -> BPETokenizer {
        func fail(_ message: String) -> BPETokenizerError {
            BPETokenizerError(description: "tokenizer in '\(group.filePath)' at '\(group.path)': \(message)")
        }
        let rewrite = "; write the tokenizer again with BPETokenizer.write(to:) from this version of Fusion"
        guard try group.hasAttribute("format"), try group.stringAttribute("format") == formatName else {
            throw fail("this group is not a Fusion BPE tokenizer (its 'format' attribute is missing or not "
                       + "'\(formatName)'); pass the group that BPETokenizer.write(to:) wrote")
        }
        let version = try group.int64Attribute("format_version")
        guard version == formatVersion else {
            throw fail("format version \(version), but this build reads version \(formatVersion)" + rewrite)
        }
        let preTokenizer = try group.stringAttribute("pretokenizer")
        guard preTokenizer == preTokenizerName else {
            throw fail("pre-tokenizer '\(preTokenizer)', but this build splits words by '\(preTokenizerName)'" + rewrite)
        }
        let specials = try group.stringAttribute("special_tokens")
        guard specials == specialTokenList else {
            throw fail("special tokens '\(specials)', expected '\(specialTokenList)' (their order fixes their ids)"
                       + rewrite)
        }
        let members = try group.childNames
        guard members == ["merges"] else {
            throw fail("members \(members), expected exactly [\"merges\"]" + rewrite)
        }
        let dataset = try group.dataset("merges")
        guard dataset.elementType == .int32 else {
            throw fail("'merges' holds \(dataset.elementType.map(\.rawValue) ?? "an unsupported type"), expected int32")
        }
        let mergeCount = try group.int64Attribute("merge_count")
        let shape = try dataset.shape
        // Ids are Int32: 256 bytes + the merges + the specials must fit.
        let mostMerges = Int64(Int32.max) - Int64(byteCount + SpecialToken.allCases.count)
        guard mergeCount >= 0, mergeCount <= mostMerges, shape == [Int(mergeCount), 2] else {
            throw fail("'merges' has shape \(shape), but merge_count = \(mergeCount) asks for "
                       + "[\(mergeCount), 2]; the file is damaged" + rewrite)
        }
        let size = try group.int64Attribute("vocabulary_size")
        let expectedSize = Int64(byteCount + SpecialToken.allCases.count) + mergeCount
        guard size == expectedSize else {
            throw fail("vocabulary_size = \(size), but 256 bytes + \(mergeCount) merges + "
                       + "\(SpecialToken.allCases.count) specials make \(expectedSize); the file is damaged" + rewrite)
        }
        let values = try dataset.read(as: Int32.self)
        var merges: [(Int32, Int32)] = []
        var seen = Set<UInt64>()
        merges.reserveCapacity(Int(mergeCount))
        for rank in 0..<Int(mergeCount) {
            let left = values[2 * rank], right = values[2 * rank + 1]
            let limit = Int32(byteCount + rank)
            guard (0..<limit).contains(left), (0..<limit).contains(right) else {
                throw fail("merge \(rank) joins (\(left), \(right)), but a merge may only join ids 0..<\(limit) "
                           + "(the bytes and the earlier merges); the file is damaged")
            }
            guard seen.insert(pairKey(left, right)).inserted else {
                throw fail("merge \(rank) joins (\(left), \(right)), a pair an earlier merge already joins; "
                           + "the file is damaged")
            }
            merges.append((left, right))
        }
        return BPETokenizer(merges: merges)
    }
}

/// A pair of token ids as one dictionary key: left in the high half, so keys order like (left, right).
@inline(__always)
func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
    UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
}

/// Bytes as a dictionary key, hashed in one call over the whole buffer rather than byte by byte.
struct ByteKey: Hashable {
    let bytes: ArraySlice<UInt8>

    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    static func == (a: ByteKey, b: ByteKey) -> Bool {
        guard a.bytes.count == b.bytes.count else { return false }
        guard !a.bytes.isEmpty else { return true }
        return a.bytes.withUnsafeBytes { x in
            b.bytes.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
        }
    }
}

/// A max-heap of (pair count, pair): the largest count first, and of equal counts the smaller pair key,
/// i.e. the smaller (left id, right id), which makes training deterministic.
struct PairHeap {
    struct Entry {
        var count: Int
        var pair: UInt64
        /// Whether `self` comes out of the heap before `other`.
        @inline(__always) func precedes(_ other: Entry) -> Bool {
            count != other.count ? count > other.count : pair < other.pair
        }
    }

    private var entries: [Entry] = []

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].precedes(entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = entries.first else { return nil }
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var first = parent
                if left < entries.count && entries[left].precedes(entries[first]) { first = left }
                if right < entries.count && entries[right].precedes(entries[first]) { first = right }
                if first == parent { break }
                entries.swapAt(parent, first)
                parent = first
            }
        }
        return top
    }
}

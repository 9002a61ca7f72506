// PreTokenizer: GPT-2's split of text into words before byte-level BPE (Radford et al. 2019,
// "Language Models are Unsupervised Multitask Learners", §2.2; the pattern is openai/gpt-2 encoder.py).
//
// BPE merges never cross a piece boundary, so "dog." and "dog!" share the token " dog" instead of
// spending merges on "dog." (the paper's motivation). The pattern, tried in order at each position:
//
//     's|'t|'re|'ve|'m|'ll|'d | ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ | \s+(?!\S) | \s+
//
// i.e. an English contraction; a run of letters, of digits, or of other symbols, each with at most
// one leading space; a run of whitespace that leaves its last character to start the next word; or a
// last run of whitespace. Written out by hand over UTF-8 bytes (no regex engine, no allocation per
// piece): pieces are byte ranges of the input. \s is Unicode White_Space, \p{L} the letter
// categories (Lu Ll Lt Lm Lo), \p{N} the number categories (Nd Nl No); everything else (punctuation,
// symbols, emoji, combining marks) is "other", as in GPT-2.

/// The pieces GPT-2's pattern splits text into, as byte ranges of its UTF-8 encoding.
enum PreTokenizer {
    /// The four classes the pattern distinguishes.
    enum ScalarClass: UInt8 { case letter, number, space, other }

    /// Classes of the 128 ASCII scalars, looked up instead of asking Unicode properties.
    private static let asciiClasses: [ScalarClass] = (0..<128).map { classify(Unicode.Scalar(UInt8($0))) }

    static func classify(_ scalar: Unicode.Scalar) -> ScalarClass {
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// Calls `body` with the byte range of each piece of `bytes` (valid UTF-8), in order; the ranges
    /// tile 0..<bytes.count.
    static func forEachPiece(in bytes: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
        let end = bytes.count
        guard end > 0 else { return }
        let asciiClasses = Self.asciiClasses

        // The class and UTF-8 length of the scalar starting at byte `i` (i < end).
        @inline(__always) func scalar(at i: Int) -> (ScalarClass, Int) {
            let lead = bytes[i]
            if lead < 0x80 { return (asciiClasses[Int(lead)], 1) }
            let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
            var value = UInt32(lead) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
            for k in 1..<length where i + k < end { value = value << 6 | UInt32(bytes[i + k] & 0x3F) }
            let decoded = Unicode.Scalar(value) ?? "\u{FFFD}"
            return (classify(decoded), min(length, end - i))
        }
        // The end of the run of scalars of class `kind` starting at `i`.
        @inline(__always) func run(of kind: ScalarClass, from i: Int) -> Int {
            var j = i
            while j < end {
                let (found, length) = scalar(at: j)
                if found != kind { break }
                j += length
            }
            return j
        }

        let apostrophe = UInt8(ascii: "'"), space = UInt8(ascii: " ")
        var start = 0
        while start < end {
            // 's 't 're 've 'm 'll 'd (lower case only, as in GPT-2).
            if bytes[start] == apostrophe && start + 1 < end {
                let next = bytes[start + 1]
                var length = 0
                switch next {
                case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"): length = 2
                case UInt8(ascii: "r"), UInt8(ascii: "v"):
                    if start + 2 < end && bytes[start + 2] == UInt8(ascii: "e") { length = 3 }
                case UInt8(ascii: "l"):
                    if start + 2 < end && bytes[start + 2] == UInt8(ascii: "l") { length = 3 }
                default: break
                }
                if length > 0 {
                    body(start..<(start + length))
                    start += length
                    continue
                }
            }
            // An optional single space, then a run of letters, digits or other symbols.
            let wordStart = bytes[start] == space && start + 1 < end ? start + 1 : start
            let (kind, _) = scalar(at: wordStart)
            if kind != .space {
                let stop = run(of: kind, from: wordStart)
                body(start..<stop)
                start = stop
                continue
            }
            // Whitespace: the whole run if it ends the text or is one scalar long; otherwise all but its
            // last scalar, which then leads the next piece (\s+(?!\S), else \s+).
            var stop = start, lastStart = start
            while stop < end {
                let (found, length) = scalar(at: stop)
                if found != .space { break }
                lastStart = stop
                stop += length
            }
            if stop < end && lastStart > start { stop = lastStart }
            body(start..<stop)
            start = stop
        }
    }
}

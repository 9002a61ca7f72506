import Foundation
import XCTest
@testable import Fusion

// BPETokenizerTests: the byte-level BPE tokenizer (Sources/Fusion/Text/BPETokenizer.swift) and its
// GPT-2 pre-tokeniser (PreTokenizer.swift). References: merges worked out by hand on tiny texts; an
// independent encoder that applies the merges one after another in training order (Sennrich et al.'s
// definition), against which the rank-ordered, cached encoder must agree; GPT-2's splitting rules
// worked out by hand. Round trips must be exact (bytes in, bytes out).
// Checked once beyond these tests: on the 38 training plays, the 736 merges to a 1,000-token vocabulary
// equal those of a Python reference (GPT-2's own pattern through the `regex` module, pair counts
// recounted from scratch before every merge, the same tie rule); the first eight are pinned below.

/// A few lines of Shakespeare (Sonnet 18) and of plain English, to train small vocabularies on.
let sampleEnglish = """
    Shall I compare thee to a summer's day?
    Thou art more lovely and more temperate:
    Rough winds do shake the darling buds of May,
    And summer's lease hath all too short a date:
    Sometime too hot the eye of heaven shines,
    And often is his gold complexion dimm'd;
    And every fair from fair sometime declines,
    By chance, or nature's changing course, untrimm'd;
    But thy eternal summer shall not fade,
    Nor lose possession of that fair thou ow'st;
    Nor shall Death brag thou wander'st in his shade,
    When in eternal lines to time thou grow'st:
    So long as men can breathe or eyes can see,
    So long lives this, and this gives life to thee.
    The quick brown fox jumps over the lazy dog; the dog sleeps, the fox runs on.
    """

final class BPETokenizerTests: XCTestCase {

    /// Texts to train on: the sample, and captions of every class with every combination of words.
    static let trainingTexts: [String] = {
        var texts = [sampleEnglish]
        for label in 0..<10 {
            for size in [[], ["small"], ["large"]] {
                for shape in [[], ["narrow"], ["wide"]] {
                    for tone in [[], ["dark"], ["light"]] {
                        for variant in 0..<Captions.variantCount {
                            texts.append(Captions.caption(label: label, adjectives: size + shape + tone, variant: variant))
                        }
                    }
                }
            }
        }
        return texts
    }()
    static let tokenizer = BPETokenizer.train(texts: trainingTexts, vocabularySize: 600)

    /// Applies the merges one by one in training order to each piece: the textbook definition of BPE
    /// encoding, with no ranks and no cache.
    func referenceEncode(_ text: String, merges: [(Int32, Int32)]) -> [Int32] {
        let bytes = Array(text.utf8)
        var ids: [Int32] = []
        bytes.withUnsafeBufferPointer { buffer in
            PreTokenizer.forEachPiece(in: buffer) { range in
                var symbols = bytes[range].map { Int32($0) }
                for (rank, (left, right)) in merges.enumerated() {
                    var merged: [Int32] = [], i = 0
                    while i < symbols.count {
                        if i + 1 < symbols.count && symbols[i] == left && symbols[i + 1] == right {
                            merged.append(Int32(256 + rank)); i += 2
                        } else {
                            merged.append(symbols[i]); i += 1
                        }
                    }
                    symbols = merged
                }
                ids += symbols
            }
        }
        return ids
    }

    func pieces(_ text: String) -> [String] {
        let bytes = Array(text.utf8)
        var result: [String] = []
        bytes.withUnsafeBufferPointer { buffer in
            PreTokenizer.forEachPiece(in: buffer) { result.append(String(decoding: bytes[$0], as: UTF8.self)) }
        }
        return result
    }

    // MARK: Pre-tokenisation

    func testPreTokenizerSplitsLikeGPT2() {
        // Contractions; one leading space joins a word; of a run of spaces the last joins the next word;
        // "\n\n" before a digit leaves its last "\n" alone (\s+(?!\S), then \s+); digits and symbols are runs.
        XCTAssertEqual(pieces("Hello world's  end\n\n123 ab!!"),
                       ["Hello", " world", "'s", " ", " end", "\n", "\n", "123", " ab", "!!"])
        XCTAssertEqual(pieces("they'll've 'tis"), ["they", "'ll", "'ve", " '", "tis"])
        XCTAssertEqual(pieces("naïve 日本 ½x  "), ["naïve", " 日本", " ½", "x", "  "])
        XCTAssertEqual(pieces("a 👩‍👩‍👧!"), ["a", " 👩‍👩‍👧!"])
        XCTAssertEqual(pieces(" "), [" "])
        XCTAssertEqual(pieces(""), [])
        // The pieces always tile the text.
        for text in [sampleEnglish, "  \t\n x", "<boi>a<eoi>"] {
            XCTAssertEqual(pieces(text).joined(), text)
        }
    }

    // MARK: Training

    func testFirstMergesMatchTheHandWorkedExample() {
        // "aaabdaaabac" (one word): aa occurs 4 times → 256 = (a, a), giving "Z a b d Z a b a c";
        // then ab and Za occur twice each, and the tie goes to the smaller pair (97, 98) → 257;
        // giving "Z Y d Z Y a c", whose most frequent pair is (256, 257) → 258.
        let tokenizer = BPETokenizer.train(texts: ["aaabdaaabac"], vocabularySize: 264 + 3)
        XCTAssertEqual(tokenizer.merges.map { [$0.0, $0.1] }, [[97, 97], [97, 98], [256, 257]])
        XCTAssertEqual(tokenizer.vocabularySize, 267)
        XCTAssertEqual(tokenizer.encode("aaabdaaabac"), [258, 100, 258, 97, 99])
    }

    /// Training with incremental pair counts and a lazy heap equals the textbook loop that recounts
    /// every pair of every word before each merge (same tie rule: larger count, then smaller pair).
    func testIncrementalTrainingEqualsRecountingFromScratch() {
        let texts = Self.trainingTexts + [sampleEnglish.uppercased(), "aaaa aaa aa a bbbb abab"]
        var words: [[Int32]: Int] = [:]
        for text in texts {
            let bytes = Array(text.utf8)
            bytes.withUnsafeBufferPointer { buffer in
                PreTokenizer.forEachPiece(in: buffer) { words[bytes[$0].map { Int32($0) }, default: 0] += 1 }
            }
        }
        var current = Array(words)
        var expected: [[Int32]] = []
        while expected.count < 400 {
            var counts: [[Int32]: Int] = [:]
            for (symbols, count) in current where symbols.count > 1 {
                for i in 0..<(symbols.count - 1) { counts[[symbols[i], symbols[i + 1]], default: 0] += count }
            }
            guard let best = counts.min(by: { $0.value != $1.value ? $0.value > $1.value
                                                                   : $0.key.lexicographicallyPrecedes($1.key) })?.key
            else { break }
            let merged = Int32(256 + expected.count)
            expected.append(best)
            current = current.map { symbols, count in
                var result: [Int32] = [], i = 0
                while i < symbols.count {
                    if i + 1 < symbols.count && symbols[i] == best[0] && symbols[i + 1] == best[1] {
                        result.append(merged); i += 2
                    } else {
                        result.append(symbols[i]); i += 1
                    }
                }
                return (result, count)
            }
        }
        let trained = BPETokenizer.train(texts: texts, vocabularySize: 264 + 400)
        XCTAssertEqual(trained.merges.count, expected.count)
        for (rank, (pair, reference)) in zip(trained.merges.map { [$0.0, $0.1] }, expected).enumerated() where pair != reference {
            return XCTFail("merge \(rank): trained \(pair), recounting gives \(reference)")
        }
    }

    func testMergesStayInsideWordsAndTrainingStopsWhenPairsRunOut() {
        // Pieces "ab", " ab", " ab": (a, b) ×3 → 256, then (" ", 256) ×2 → 257; then every word is one
        // token, so training stops short of the asked size, and "b" + " " is never merged.
        let tokenizer = BPETokenizer.train(texts: ["ab ab ab"], vocabularySize: 1000)
        XCTAssertEqual(tokenizer.merges.map { [$0.0, $0.1] }, [[97, 98], [32, 256]])
        XCTAssertEqual(tokenizer.vocabularySize, 256 + 2 + SpecialToken.allCases.count)
        XCTAssertEqual(tokenizer.encode("ab ab"), [256, 257])
        XCTAssertEqual(tokenizer.bytes(of: 257), Array(" ab".utf8))
    }

    func testTrainingIsDeterministicAndIndependentOfTextOrder() {
        let first = BPETokenizer.train(texts: Self.trainingTexts, vocabularySize: 600)
        var shuffled = Self.trainingTexts
        var generator = RandomGenerator(seed: 7)
        generator.shuffle(&shuffled)
        let second = BPETokenizer.train(texts: shuffled, vocabularySize: 600)
        XCTAssertGreaterThan(first.merges.count, 250)   // the captions and the sonnet run out of pairs at ~300
        XCTAssertEqual(first.merges.map { [$0.0, $0.1] }, second.merges.map { [$0.0, $0.1] })
        XCTAssertEqual(first.merges.map { [$0.0, $0.1] }, Self.tokenizer.merges.map { [$0.0, $0.1] })
    }

    func testTooSmallAVocabularyIsRejected() {
        // 264 = 256 bytes + 8 specials is the smallest; it learns no merges.
        XCTAssertEqual(BPETokenizer.train(texts: ["aaaa"], vocabularySize: 264).merges.count, 0)
        // (Below 264 `train` stops with a precondition failure, which XCTest cannot catch.)
    }

    // MARK: Encoding

    func testRoundTripsExactly() {
        let tokenizer = Self.tokenizer
        var texts = [sampleEnglish, "", " ", "\n\n\t  x  ", "ASCII: 0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
                     "naïve café — Ünïcödé ½ 日本語のテキスト Ελληνικά العربية", "emoji 👩‍👩‍👧 🇫🇷 ✨🙂 e\u{301}",
                     "a photo of a large wide dark coat", "<boi><eos>\u{0}\u{7F}"]
        var generator = RandomGenerator(seed: 1)
        for _ in 0..<50 {   // random "bytes as Latin-1": every scalar 0…255, control characters included
            let length = generator.nextInt(below: 40)
            texts.append(String(String.UnicodeScalarView((0..<length).map {
                _ in Unicode.Scalar(UInt8(generator.nextInt(below: 256)))
            })))
        }
        for text in texts {
            let ids = tokenizer.encode(text)
            XCTAssertEqual(tokenizer.decode(ids), text, "ids \(ids.prefix(12))")
            XCTAssertTrue(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.textTokenCount }, "\(text)")
        }
    }

    func testEncodingAgreesWithMergesAppliedInTrainingOrder() {
        let tokenizer = Self.tokenizer
        var generator = RandomGenerator(seed: 2)
        let alphabet = Array("aeiou thsrndlc'.,\n").map(String.init)
        var texts = Self.trainingTexts.prefix(40).map { $0 } + [sampleEnglish.uppercased()]
        for _ in 0..<100 {
            texts.append((0..<generator.nextInt(below: 30)).map { _ in alphabet[generator.nextInt(below: alphabet.count)] }.joined())
        }
        for text in texts {
            // Twice: the second call is served from the cache and must agree too.
            XCTAssertEqual(tokenizer.encode(text), referenceEncode(text, merges: tokenizer.merges), "\(text)")
            XCTAssertEqual(tokenizer.encode(text), referenceEncode(text, merges: tokenizer.merges), "\(text)")
        }
    }

    func testCompressesBetterThanBytes() {
        // Unseen captions and unseen English: fewer tokens than bytes, by a margin a learned vocabulary gives.
        let tokenizer = Self.tokenizer
        let captions = "a picture of a sneaker that is narrow and light. an ankle boot, large, dark."
        let english = "Shall I compare the summer to a darling day? The dog and the fox."
        let captionRatio = Double(tokenizer.encode(captions).count) / Double(captions.utf8.count)
        let englishRatio = Double(tokenizer.encode(english).count) / Double(english.utf8.count)
        XCTAssertLessThan(captionRatio, 0.35, "tokens per byte on captions")
        XCTAssertLessThan(englishRatio, 0.7, "tokens per byte on English")
    }

    // MARK: Special tokens

    func testSpecialTokensHaveDistinctIdsAboveTheTextAndAreNeverEncoded() {
        let tokenizer = Self.tokenizer
        let ids = SpecialToken.allCases.map { tokenizer.id($0) }
        XCTAssertEqual(Set(ids).count, SpecialToken.allCases.count)
        XCTAssertEqual(ids, (0..<Int32(SpecialToken.allCases.count)).map { Int32(tokenizer.textTokenCount) + $0 })
        XCTAssertEqual(Int(ids.max()!), tokenizer.vocabularySize - 1)
        for special in SpecialToken.allCases {
            XCTAssertEqual(tokenizer.special(for: tokenizer.id(special)), special)
            XCTAssertEqual(tokenizer.decode([tokenizer.id(special)]), "<\(special.rawValue)>")
            let literal = tokenizer.encode(special.rendered)
            XCTAssertFalse(literal.contains { tokenizer.special(for: $0) != nil }, "encode(\"\(special.rendered)\") = \(literal)")
        }
        XCTAssertNil(tokenizer.special(for: 0))
        XCTAssertNil(tokenizer.special(for: Int32(tokenizer.textTokenCount - 1)))
        let framed = [tokenizer.id(.bos)] + tokenizer.encode("a coat") + [tokenizer.id(.boi), tokenizer.id(.eoi)]
        XCTAssertEqual(tokenizer.decode(framed), "<bos>a coat<boi><eoi>")
    }

    func testDecodeRepairsCutCharacters() {
        let tokenizer = BPETokenizer.train(texts: ["x"], vocabularySize: 264)
        XCTAssertEqual(tokenizer.encode("é"), [0xC3, 0xA9])
        XCTAssertEqual(tokenizer.decode([0xC3]), "\u{FFFD}")
        XCTAssertEqual(tokenizer.decode([0x61, 0xA9, 0x62]), "a\u{FFFD}b")
    }

    // MARK: Saving and reading

    func testSaveAndReadRoundTripThroughHDF5() throws {
        let directory = try makeTemporaryDirectory("bpe")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("tokenizer.h5").path
        let tokenizer = Self.tokenizer
        let file = try HDF5File.create(path)
        try tokenizer.write(to: try file.root.createGroup("tokenizer"))
        try file.close()

        let reopened = try HDF5File.open(path)
        let read = try BPETokenizer.read(from: try reopened.root.group("tokenizer"))
        XCTAssertEqual(read.vocabularySize, tokenizer.vocabularySize)
        XCTAssertEqual(read.merges.map { [$0.0, $0.1] }, tokenizer.merges.map { [$0.0, $0.1] })
        for text in [sampleEnglish, "a photo of a wide light coat", "日本 👩‍👩‍👧"] {
            XCTAssertEqual(read.encode(text), tokenizer.encode(text))
        }
        XCTAssertEqual(read.id(.mmu), tokenizer.id(.mmu))
        try reopened.close()
    }

    func testStrictReadRejectsDamagedGroupsSayingWhatIsWrong() throws {
        let directory = try makeTemporaryDirectory("bpe-strict")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = try HDF5File.create(directory.appendingPathComponent("t.h5").path)
        defer { try? file.close() }
        let tokenizer = BPETokenizer.train(texts: ["aaabdaaabac"], vocabularySize: 267)

        func written(_ name: String) throws -> HDF5Group {
            let group = try file.root.createGroup(name)
            try tokenizer.write(to: group)
            return group
        }
        XCTAssertEqual(try BPETokenizer.read(from: try written("good")).merges.count, 3)

        assertThrows(try BPETokenizer.read(from: try file.root.createGroup("empty")),
                     containing: ["/empty", "not a Fusion BPE tokenizer"])
        let future = try written("future")
        try future.setAttribute("format_version", Int64(2))
        assertThrows(try BPETokenizer.read(from: future), containing: ["format version 2", "reads version 1"])
        let otherSplit = try written("other_split")
        try otherSplit.setAttribute("pretokenizer", "whitespace")
        assertThrows(try BPETokenizer.read(from: otherSplit), containing: ["pre-tokenizer 'whitespace'"])
        let reordered = try written("reordered")
        try reordered.setAttribute("special_tokens", "eos,bos,pad,boi,eoi,mask,t2i,mmu")
        assertThrows(try BPETokenizer.read(from: reordered), containing: ["special tokens", "order"])
        let miscounted = try written("miscounted")
        try miscounted.setAttribute("merge_count", Int64(4))
        assertThrows(try BPETokenizer.read(from: miscounted), containing: ["shape [3, 2]", "merge_count = 4"])
        let resized = try written("resized")
        try resized.setAttribute("vocabulary_size", Int64(1000))
        assertThrows(try BPETokenizer.read(from: resized), containing: ["vocabulary_size = 1000", "make 267"])
        let extra = try written("extra")
        try extra.createDataset("ranks", values: [Int32(0)], shape: [1])
        assertThrows(try BPETokenizer.read(from: extra), containing: ["members", "ranks"])

        // Merges by hand: one that refers to a later token, one that repeats a pair.
        func handWritten(_ name: String, merges: [Int32]) throws -> HDF5Group {
            let group = try file.root.createGroup(name)
            try group.setAttribute("format", "fusion-byte-level-bpe")
            try group.setAttribute("format_version", Int64(1))
            try group.setAttribute("pretokenizer", "gpt2")
            try group.setAttribute("special_tokens", "bos,eos,pad,boi,eoi,mask,t2i,mmu")
            try group.setAttribute("merge_count", merges.count / 2)
            try group.setAttribute("vocabulary_size", 264 + merges.count / 2)
            try group.createDataset("merges", values: merges, shape: [merges.count / 2, 2])
            return group
        }
        XCTAssertEqual(try BPETokenizer.read(from: try handWritten("fine", merges: [97, 97, 256, 97])).merges.count, 2)
        assertThrows(try BPETokenizer.read(from: try handWritten("forward", merges: [97, 97, 257, 97])),
                     containing: ["merge 1 joins (257, 97)", "0..<257"])
        assertThrows(try BPETokenizer.read(from: try handWritten("negative", merges: [-1, 97])),
                     containing: ["merge 0 joins (-1, 97)"])
        assertThrows(try BPETokenizer.read(from: try handWritten("twice", merges: [97, 97, 97, 97])),
                     containing: ["merge 1", "already joins"])
    }

    // MARK: The real corpus

    /// Shakespeare's training plays (≈ 4.6 MB) train to 1,000 tokens well within 20 s, and the held-out
    /// plays round-trip. Skipped when scripts/setup has not fetched the plays.
    func testShakespeareTrainsQuicklyAndRoundTrips() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("data/shakespeare").path
        guard FileManager.default.fileExists(atPath: directory) else {
            throw XCTSkip("\(directory) is missing; run scripts/setup")
        }
        let corpus = try ShakespeareCorpus.load(directory: directory)
        let start = Date()
        let tokenizer = BPETokenizer.train(texts: corpus.trainingPlays.map(\.text), vocabularySize: 1000)
        let trainSeconds = Date().timeIntervalSince(start)
        XCTAssertEqual(tokenizer.vocabularySize, 1000)
        XCTAssertLessThan(trainSeconds, 20, "training on Shakespeare to 1,000 tokens")
        XCTAssertEqual((256..<264).map { tokenizer.decode([Int32($0)]) }, [" t", "he", " a", "ou", " s", "in", " m", " w"])

        let heldOut = corpus.heldOutText
        let encodeStart = Date()
        let ids = tokenizer.encode(heldOut)
        let encodeSeconds = Date().timeIntervalSince(encodeStart)
        XCTAssertEqual(tokenizer.decode(ids), heldOut)
        let bytesPerToken = Double(heldOut.utf8.count) / Double(ids.count)
        XCTAssertGreaterThan(bytesPerToken, 2.0, "a 1,000-token BPE should compress English text (2.29 when written)")
        print(String(format: "Shakespeare BPE: trained on %.1f MB to %d tokens in %.2f s; held-out %.1f MB encoded in %.2f s, %.2f bytes/token; first merges %@",
                     Double(corpus.trainingText.utf8.count) / 1e6, tokenizer.vocabularySize, trainSeconds,
                     Double(heldOut.utf8.count) / 1e6, encodeSeconds, bytesPerToken,
                     (256..<264).map { "'\(tokenizer.decode([Int32($0)]))'" }.joined(separator: " ")))
    }
}

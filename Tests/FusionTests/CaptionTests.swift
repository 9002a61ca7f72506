import Foundation
import XCTest
@testable import Fusion

// CaptionTests: deterministic Fashion-MNIST captions (Sources/Fusion/Text/Captions.swift) and the
// Shakespeare corpus loader (Sources/Fusion/Text/ShakespeareCorpus.swift), the text data of Fusion.
// Captions are checked on synthetic images whose properties are known by construction, and the
// tertile constants on the real test images (each word should cover about a third of its class);
// the corpus on small fixture directories, and on the real plays when scripts/setup has fetched them.

/// A 32×32 image (row-major) of zeros with a `width` × `height` rectangle of `value` at (top, left).
func rectangleImage(width: Int, height: Int, value: Float, side: Int = 32, top: Int = 3, left: Int = 4) -> [Float] {
    var image = [Float](repeating: 0, count: side * side)
    for row in top..<(top + height) { for column in left..<(left + width) { image[row * side + column] = value } }
    return image
}

final class CaptionTests: XCTestCase {
    let coat = 4

    func testPropertiesAreMeasuredFromTheInk() {
        var image = rectangleImage(width: 21, height: 20, value: 0.3)
        image[0] = 0.1   // not ink: ink is strictly brighter than 0.1
        let properties = Captions.properties(of: image, side: 32)
        XCTAssertEqual(properties.inkWidth, 21)
        XCTAssertEqual(properties.inkHeight, 20)
        XCTAssertEqual(properties.inkArea, 420)
        XCTAssertEqual(properties.brightness, 0.3, accuracy: 1e-6)   // Float 0.3 widened: within 1e-7
        XCTAssertEqual(properties.aspect, 21.0 / 20.0)
        // Padding changes nothing: the same rectangle in a 28×28 image.
        XCTAssertEqual(Captions.properties(of: rectangleImage(width: 21, height: 20, value: 0.3, side: 28, top: 1, left: 2),
                                           side: 28), Captions.properties(of: rectangleImage(width: 21, height: 20, value: 0.3), side: 32))
        XCTAssertEqual(Captions.properties(of: [Float](repeating: 0, count: 1024), side: 32).inkArea, 0)
    }

    func testPropertiesChangeTheWords() {
        // Coat cuts: brightness 0.6555 / 0.7704, aspect 0.7143 / 0.75, area 426 / 472.
        func words(_ width: Int, _ height: Int, _ value: Float) -> [String] {
            Captions.adjectives(for: Captions.properties(of: rectangleImage(width: width, height: height, value: value),
                                                         side: 32), label: coat)
        }
        XCTAssertEqual(words(21, 21, 0.3), ["wide", "dark"])
        XCTAssertEqual(words(21, 21, 0.95), ["wide", "light"])
        XCTAssertEqual(words(20, 27, 0.7), ["large"])
        XCTAssertEqual(words(10, 20, 0.7), ["small", "narrow"])
        XCTAssertEqual(words(18, 25, 0.7), [])   // aspect 0.72, area 450, brightness 0.7: the median coat
        let dark = Captions.caption(for: rectangleImage(width: 21, height: 21, value: 0.3), label: coat, variant: 0)
        let light = Captions.caption(for: rectangleImage(width: 21, height: 21, value: 0.95), label: coat, variant: 0)
        XCTAssertEqual(dark, "a wide dark coat")
        XCTAssertEqual(light, "a wide light coat")
        XCTAssertEqual(Captions.caption(for: rectangleImage(width: 18, height: 25, value: 0.7), label: coat, variant: 0),
                       Captions.classPrompt(label: coat))
    }

    func testPhrasingsAndNounForms() {
        let words = ["large", "wide", "dark"]
        XCTAssertEqual(Captions.caption(label: coat, adjectives: words, variant: 0), "a large wide dark coat")
        XCTAssertEqual(Captions.caption(label: coat, adjectives: words, variant: 1), "a photo of a large wide dark coat")
        XCTAssertEqual(Captions.caption(label: coat, adjectives: words, variant: 2), "a coat, large, wide, dark")
        XCTAssertEqual(Captions.caption(label: coat, adjectives: words, variant: 3),
                       "a picture of a coat that is large, wide and dark")
        XCTAssertEqual(Captions.caption(label: 9, adjectives: ["dark"], variant: 2), "an ankle boot, dark")
        XCTAssertEqual(Captions.caption(label: 9, adjectives: ["dark"], variant: 3), "a picture of an ankle boot that is dark")
        XCTAssertEqual(Captions.caption(label: 0, adjectives: ["light"], variant: 4), "a light top")
        XCTAssertEqual(Captions.caption(label: 0, adjectives: [], variant: 1), "a photo of a t-shirt")
        XCTAssertEqual(Captions.caption(label: 1, adjectives: [], variant: 3), "a picture of a pair of trousers")
        XCTAssertEqual((0..<10).map(Captions.classPrompt),
                       ["a t-shirt", "a pair of trousers", "a pullover", "a dress", "a coat", "a sandal", "a shirt",
                        "a sneaker", "a bag", "an ankle boot"])
    }

    func testCaptionsAreDeterministic() {
        let image = rectangleImage(width: 12, height: 26, value: 0.55)
        for label in 0..<10 {
            for variant in 0..<Captions.variantCount {
                XCTAssertEqual(Captions.caption(for: image, label: label, variant: variant),
                               Captions.caption(for: image, label: label, variant: variant))
            }
        }
        let first = (0..<800).map { Captions.variant(seed: 1, index: $0) }
        XCTAssertEqual(first, (0..<800).map { Captions.variant(seed: 1, index: $0) })
        XCTAssertEqual(Set(first), Set(0..<Captions.variantCount), "every phrasing is drawn")
        XCTAssertNotEqual(first, (0..<800).map { Captions.variant(seed: 2, index: $0) })
        // Independent of the order items are visited in.
        XCTAssertEqual(Captions.variant(seed: 1, index: 799), first[799])
        // Pinned values: a change here changes every run's data; do it on purpose only.
        XCTAssertEqual(Array(first.prefix(12)), [6, 1, 6, 3, 0, 3, 4, 7, 5, 2, 7, 4])
    }

    func testEveryCaptionNamesItsOwnClass() {
        for label in 0..<10 {
            for size in [[], ["small"], ["large"]] {
                for shape in [[], ["narrow"], ["wide"]] {
                    for tone in [[], ["dark"], ["light"]] {
                        for variant in 0..<Captions.variantCount {
                            let caption = Captions.caption(label: label, adjectives: size + shape + tone, variant: variant)
                            XCTAssertEqual(Captions.className(in: caption), label, "\"\(caption)\"")
                        }
                    }
                }
            }
        }
    }

    func testClassNamesAreMatchedAsWholeWords() {
        let cases: [(String, Int?)] = [
            ("a shirt", 6), ("a t-shirt", 0), ("A T-Shirt, dark", 0), ("a top", 0), ("tops and tees", 0),
            ("an ankle boot", 9), ("two boots", 9), ("a sandal", 5), ("sandals", 5), ("a sneaker", 7),
            ("trousers", 1), ("a pair of trousers", 1), ("a bag.", 8), ("a dress!", 3), ("coats", 4),
            ("a pullover", 2), ("a sweater", 2),
            ("stop", nil), ("a bagel", nil), ("shirtless", nil), ("a coatrack", nil), ("", nil), ("a dark thing", nil),
            ("a shirt and a coat", nil), ("a t-shirt, not a shirt", nil), ("a shirt, a shirt", 6),
        ]
        for (caption, expected) in cases {
            XCTAssertEqual(Captions.className(in: caption), expected, "\"\(caption)\"")
        }
    }

    /// The tertile constants, checked on the real test images: each word covers roughly a third of its
    /// class (the cuts were measured on the training images, so the shares are near, not at, 1/3; ties
    /// at whole-pixel aspect ratios make some thinner). Skipped when Fashion-MNIST is not installed.
    func testTertileCutsSplitTheRealTestImagesInThirds() throws {
        let imagePath = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
        let labelPath = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
        guard FileManager.default.fileExists(atPath: imagePath) else { throw XCTSkip("Fashion-MNIST is not installed; run scripts/setup") }
        let bytes = try Gzip.readAll(imagePath), labels = try Gzip.readAll(labelPath)
        XCTAssertEqual(bytes.count, 16 + 10_000 * 784)
        var counts = [[Int]](repeating: [Int](repeating: 0, count: 7), count: 10)   // per class: total, 6 words
        let wordIndex = ["small": 1, "large": 2, "narrow": 3, "wide": 4, "dark": 5, "light": 6]
        var examples: [String] = []
        var image = [Float](repeating: 0, count: 784)
        for n in 0..<10_000 {
            for k in 0..<784 { image[k] = Float(bytes[16 + n * 784 + k]) / 255 }
            let label = Int(labels[8 + n])
            counts[label][0] += 1
            for word in Captions.adjectives(for: Captions.properties(of: image, side: 28), label: label) {
                counts[label][wordIndex[word]!] += 1
            }
            if n < 10 { examples.append(Captions.caption(for: image, side: 28, label: label, variant: Captions.variant(seed: 0, index: n))) }
        }
        for label in 0..<10 {
            for (word, index) in wordIndex {
                let share = Double(counts[label][index]) / Double(counts[label][0])
                XCTAssertTrue((0.15...0.45).contains(share), "\(Captions.classNames[label]) '\(word)': \(share)")
            }
        }
        // Pinned: the same captions on every machine (a change here changes every run's data).
        XCTAssertEqual(Array(examples.prefix(4)), ["a picture of an ankle boot that is small, wide and dark", "a light pullover",
                                                   "a light pair of trousers", "a small dark pair of trousers"])
        print("captions of the first test images (seed 0): " + examples.map { "\"\($0)\"" }.joined(separator: ", "))
    }
}

final class ShakespeareCorpusTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try makeTemporaryDirectory("corpus") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func write(_ name: String, _ text: String) throws {
        try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }

    func testLoadsCleansAndSplitsAFixture() throws {
        try write("alpha_gut.txt", "ALPHA\n\nby William Shakespeare\n\nFirst line.\n")
        try write("beta_gut.txt", "The Project Gutenberg EBook of Beta\r\nLicence text\r\n"
                  + "*** START OF THE PROJECT GUTENBERG EBOOK BETA ***\r\n\r\nBETA\r\nTo be.\r\n\r\n"
                  + "*** END OF THE PROJECT GUTENBERG EBOOK BETA ***\r\nMore licence.\r\n")
        try write("gamma_gut.txt", "GAMMA\nThird.")
        try write("delta_gut.txt", "\n\nDELTA\nFourth.\n\n")
        try write("notes.txt", "not a play")
        // Sorted: alpha, beta, delta, gamma; every 2nd from index 1 is held out: beta, gamma.
        let corpus = try ShakespeareCorpus.load(directory: directory.path, heldOutEvery: 2)
        XCTAssertEqual(corpus.trainingPlays.map(\.name), ["alpha", "delta"])
        XCTAssertEqual(corpus.heldOutPlays.map(\.name), ["beta", "gamma"])
        XCTAssertEqual(corpus.heldOutPlays[0].text, "BETA\nTo be.")
        XCTAssertEqual(corpus.trainingText, "ALPHA\n\nby William Shakespeare\n\nFirst line.\n\nDELTA\nFourth.")
        XCTAssertEqual(corpus.heldOutText, "BETA\nTo be.\n\nGAMMA\nThird.")
    }

    func testMissingEmptyOrUnsplittableDirectoriesSayWhatToDo() throws {
        assertThrows(try ShakespeareCorpus.load(directory: directory.appendingPathComponent("absent").path),
                     containing: ["no directory", "absent", "scripts/setup"])
        assertThrows(try ShakespeareCorpus.load(directory: directory.path), containing: ["no *_gut.txt files", "scripts/setup"])
        try write("only_gut.txt", "One play.")
        assertThrows(try ShakespeareCorpus.load(directory: directory.path, heldOutEvery: 2),
                     containing: ["1 play(s)", "0 held-out"])
        try Data([0x41, 0xFF, 0xFE]).write(to: directory.appendingPathComponent("broken_gut.txt"))
        assertThrows(try ShakespeareCorpus.load(directory: directory.path, heldOutEvery: 2),
                     containing: ["broken_gut.txt", "not UTF-8"])
    }

    /// The real plays (when scripts/setup has fetched them) split as ShakespeareCorpus.swift documents.
    func testTheRealPlaysSplitAsDocumented() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let path = root.appendingPathComponent("data/shakespeare").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is missing; run scripts/setup") }
        let corpus = try ShakespeareCorpus.load(directory: path)
        XCTAssertEqual(corpus.heldOutPlays.map(\.name), ["cymbeline", "julius_caesar", "othello", "tempest"])
        XCTAssertEqual(corpus.trainingPlays.count, 38)
        XCTAssertTrue(corpus.trainingPlays.contains { $0.name == "hamlet" })
        XCTAssertTrue(corpus.heldOutPlays[3].text.hasPrefix("THE TEMPEST"))
        let heldOutShare = Double(corpus.heldOutText.utf8.count) / Double(corpus.heldOutText.utf8.count + corpus.trainingText.utf8.count)
        XCTAssertTrue((0.05...0.15).contains(heldOutShare), "held-out share \(heldOutShare)")
        for play in corpus.trainingPlays + corpus.heldOutPlays {
            XCTAssertFalse(play.text.contains("\r"), play.name)
            XCTAssertFalse(play.text.contains("*** START OF"), play.name)
        }
    }
}

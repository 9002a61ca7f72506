// PNG tests: what we write is checked by an independent decoder (netpbm's pngtopnm, whose binary
// PGM/PPM output is parsed here), what we read is checked on files from an independent encoder
// (netpbm's pnmtopng), plus the grid layout, clamping, overwrite refusal and error messages.
// All comparisons are exact: 8-bit PNG is lossless, so no tolerance is justified.
import Foundation
import XCTest
@testable import Fusion

final class PNGTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("fusion-png-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// A width×height image whose bytes cover 0...255 in a pattern that makes a transposition,
    /// channel swap or row shift show up.
    func patternImage(width: Int, height: Int, channels: Int) -> Image8 {
        var pixels: [UInt8] = []
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<channels { pixels.append(UInt8((x * 37 + y * 11 + c * 101) % 256)) }
            }
        }
        pixels[0] = 0
        pixels[pixels.count - 1] = 255
        return Image8(width: width, height: height, channels: channels, pixels: pixels)
    }

    // MARK: writing, checked by pngtopnm

    func testGreyPNGDecodesExactlyWithPngtopnm() throws {
        let image = patternImage(width: 7, height: 5, channels: 1)
        let file = path("grey.png")
        try PNG.write(image, to: file, overwrite: false)
        let decoded = try Netpbm.decodePNG(file)
        XCTAssertEqual(decoded.magic, "P5")
        assertImagesEqual(decoded.image, image)
        assertImagesEqual(try PNG.read(file), image)
    }

    func testRGBPNGDecodesExactlyWithPngtopnm() throws {
        let image = patternImage(width: 6, height: 9, channels: 3)
        let file = path("rgb.png")
        try PNG.write(image, to: file, overwrite: false)
        let decoded = try Netpbm.decodePNG(file)
        XCTAssertEqual(decoded.magic, "P6")
        assertImagesEqual(decoded.image, image)
        assertImagesEqual(try PNG.read(file), image)
    }

    func testEncodedBytesAreThePNGFileWriteMakes() throws {
        for channels in [1, 3] {
            let image = patternImage(width: 11, height: 4, channels: channels)
            let file = path("encoded-\(channels).png"), written = path("written-\(channels).png")
            let bytes = try PNG.encode(image)
            try bytes.write(to: URL(fileURLWithPath: file))
            try PNG.write(image, to: written, overwrite: false)
            XCTAssertEqual(bytes, try Data(contentsOf: URL(fileURLWithPath: written)))
            let decoded = try Netpbm.decodePNG(file)
            XCTAssertEqual(decoded.magic, channels == 1 ? "P5" : "P6")
            assertImagesEqual(decoded.image, image)
        }
    }

    // MARK: reading, checked on files from pnmtopng

    func testReadsPNGsMadeByPnmtopng() throws {
        for channels in [1, 3] {
            let image = patternImage(width: 11, height: 4, channels: channels)
            let pnm = path("independent-\(channels).pnm"), png = path("independent-\(channels).png")
            try Netpbm.pnmData(image).write(to: URL(fileURLWithPath: pnm))
            let encoded = try ExternalTool.run("pnmtopng", [pnm])
            try encoded.write(to: URL(fileURLWithPath: png))
            assertImagesEqual(try PNG.read(png), image)
        }
    }

    // MARK: grid

    func testGridLayout() throws {
        // 5 grey images of 3×2 (H×W) in rows of 2 with 1 pixel of padding:
        // width 2·2 + 3·1 = 7, height 3·3 + 4·1 = 13; the last row's second slot stays border.
        let (n, h, w) = (5, 3, 2)
        var values: [Float] = []
        for i in 0..<n { for y in 0..<h { for x in 0..<w { values.append(Float(i * 6 + y * 2 + x + 1) / 64) } } }
        let grid = try PNG.grid(Tensor(values, shape: [n, 1, h, w]), columns: 2, padding: 1)
        XCTAssertEqual(grid.width, 7)
        XCTAssertEqual(grid.height, 13)
        XCTAssertEqual(grid.channels, 1)

        // Written out by hand: which grid column each x falls in (nil = border), and likewise for y.
        let columnOf: [Int?] = [nil, 0, 0, nil, 1, 1, nil]
        let rowOf: [Int?] = [nil, 0, 0, 0, nil, 1, 1, 1, nil, 2, 2, 2, nil]
        let firstX = [1, 4], firstY = [1, 5, 9]
        for y in 0..<13 {
            for x in 0..<7 {
                var expected: UInt8 = 255  // default border
                if let col = columnOf[x], let row = rowOf[y], row * 2 + col < n {
                    let i = row * 2 + col, iy = y - firstY[row], ix = x - firstX[col]
                    expected = UInt8((Float(i * 6 + iy * 2 + ix + 1) / 64 * 255).rounded())
                }
                XCTAssertEqual(grid[x: x, y: y, channel: 0], expected, "pixel (\(x), \(y))")
            }
        }
    }

    func testAScaledGridDrawsEachPixelAsASquare() throws {
        let images = Tensor((0..<(3 * 2 * 3)).map { Float($0) / 17 }, shape: [3, 1, 2, 3])
        let plain = try PNG.grid(images, columns: 2, padding: 1)
        let scaled = try PNG.grid(images, columns: 2, padding: 1, scale: 3)
        XCTAssertEqual([scaled.width, scaled.height], [1 + 2 * (9 + 1), 1 + 2 * (6 + 1)])
        for i in 0..<3 {
            let (column, row) = (i % 2, i / 2)
            for y in 0..<6 {
                for x in 0..<9 {
                    let big = scaled.pixels[(1 + row * 7 + y) * scaled.width + 1 + column * 10 + x]
                    let small = plain.pixels[(1 + row * 3 + y / 3) * plain.width + 1 + column * 4 + x / 3]
                    XCTAssertEqual(big, small, "image \(i), pixel (\(x), \(y))")
                }
            }
        }
        XCTAssertEqual(scaled.pixels[0], 255, "padding stays one pixel of border")
        XCTAssertThrowsError(try PNG.grid(images, columns: 2, scale: 0))
        XCTAssertThrowsError(try PNG.grid(images, columns: 2, scale: 65))
    }

    /// Labels are drawn below their images in the 5×7 font: the glyph bitmaps of the generated table land
    /// where the layout says, the images are unchanged, and every row makes room for its longest label.
    func testLabelsAreDrawnBelowTheirImages() throws {
        let images = Tensor(repeating: 0.5, shape: [3, 1, 4, 4])
        let plain = try PNG.grid(images, columns: 2, padding: 1, scale: 3)
        let labeled = try PNG.grid(images, columns: 2, padding: 1, scale: 3, labels: ["A", "ab cd", "?"])
        // 12-pixel images hold 2 characters a line: "ab cd" wraps to two lines, so each row is 2 + 2·8 taller.
        XCTAssertEqual(labeled.width, plain.width)
        XCTAssertEqual(labeled.height, 1 + 2 * (12 + 2 + 2 * 8 + 1))
        for y in 0..<12 { for x in 0..<12 { XCTAssertEqual(labeled[x: 1 + x, y: 1 + y, channel: 0], 128) } }
        // "A" under image 0 at (1, 1 + 12 + 2): the glyph's rows, bit 7 leftmost, drawn black on white.
        let glyph = Font5x7.glyphs[Int(("A" as Unicode.Scalar).value) - 32]
        XCTAssertFalse(glyph.allSatisfy { $0 == 0 })
        for row in 0..<7 {
            for column in 0..<5 {
                let lit = glyph[row] & (0x80 >> column) != 0
                XCTAssertEqual(labeled[x: 1 + column, y: 15 + row, channel: 0], lit ? 0 : 255, "A at (\(column), \(row))")
            }
        }
        // "cd" on the second line under image 1; nothing drawn under the third label's line 2.
        let c = Font5x7.glyphs[Int(("c" as Unicode.Scalar).value) - 32]
        for row in 0..<7 { for column in 0..<5 {
            XCTAssertEqual(labeled[x: 14 + column, y: 15 + 8 + row, channel: 0], c[row] & (0x80 >> column) != 0 ? 0 : 255)
        } }
        let secondRowTop = 1 + 12 + 2 + 16 + 1
        let secondLine = (secondRowTop + 12 + 2 + 8)..<(secondRowTop + 12 + 2 + 16)
        XCTAssertTrue(secondLine.allSatisfy { y in (1..<13).allSatisfy { labeled[x: $0, y: y, channel: 0] == 255 } })
        XCTAssertThrowsError(try PNG.grid(images, columns: 2, labels: ["one"])) { XCTAssertTrue("\($0)".contains("1 labels for 3 images"), "\($0)") }
    }

    func testLabelsWrapAtSpacesAndAreCutToTheirLines() {
        XCTAssertEqual(Image8.wrap("a large light ankle boot", width: 11, lines: 4), ["a large", "light ankle", "boot"])
        XCTAssertEqual(Image8.wrap("abcdefghij", width: 4, lines: 4), ["abcd", "efgh", "ij"])
        XCTAssertEqual(Image8.wrap("one two three four", width: 5, lines: 2), ["one", "two.."])
        XCTAssertEqual(Image8.wrap("", width: 5, lines: 2), [])
        var image = Image8(width: 6, height: 8, channels: 3, repeating: 0)
        image.draw("é", x: 0, y: 0, value: 255)
        var question = Image8(width: 6, height: 8, channels: 3, repeating: 0)
        question.draw("?", x: 0, y: 0, value: 255)
        XCTAssertEqual(image, question, "outside ASCII is drawn as ?")
        XCTAssertTrue(image.pixels.contains(255))
        image.draw("W", x: 4, y: 6, value: 7)  // clipped at the edges, no trap
    }

    func testGridNoWiderThanItsImagesAndCustomBorder() throws {
        let grid = try PNG.grid(Tensor(repeating: 0.5, shape: [2, 1, 4, 4]), columns: 8, padding: 3, border: 9)
        XCTAssertEqual(grid.width, 2 * 4 + 3 * 3)
        XCTAssertEqual(grid.height, 4 + 2 * 3)
        XCTAssertEqual(grid[x: 0, y: 0, channel: 0], 9)
        XCTAssertEqual(grid[x: 7, y: 5, channel: 0], 9)  // the gap between the two images
        XCTAssertEqual(grid[x: 3, y: 3, channel: 0], 128)  // first pixel of image 0
        XCTAssertEqual(grid[x: 10, y: 3, channel: 0], 128)  // first pixel of image 1
    }

    func testGridClampsAndScales() throws {
        let values: [Float] = [-1, 0, 0.5, 1, 2, .nan, .infinity, -.infinity]
        let grid = try PNG.grid(Tensor(values, shape: [1, 1, 2, 4]), columns: 1, padding: 0)
        XCTAssertEqual(grid.pixels, [0, 0, 128, 255, 255, 0, 255, 0])

        let signed = try PNG.grid(Tensor([-1, -0.5, 0, 1, 3], shape: [1, 1, 1, 5]), columns: 1, padding: 0, range: -1...1)
        XCTAssertEqual(signed.pixels, [0, 64, 128, 255, 255])  // 63.75 → 64, 127.5 → 128
    }

    func testRGBGridInterleavesChannelsAndDecodesWithPngtopnm() throws {
        // [N=2, C=3, H=2, W=3], values k/255 so that every byte is exactly k.
        let count = 2 * 3 * 2 * 3
        let images = Tensor((0..<count).map { Float($0 * 7) / 255 }, shape: [2, 3, 2, 3])
        let grid = try PNG.grid(images, columns: 2, padding: 0)
        XCTAssertEqual(grid.width, 6)
        XCTAssertEqual(grid.height, 2)
        XCTAssertEqual(grid.channels, 3)
        for i in 0..<2 {
            for c in 0..<3 {
                for y in 0..<2 {
                    for x in 0..<3 {
                        let k = ((i * 3 + c) * 2 + y) * 3 + x
                        XCTAssertEqual(grid[x: i * 3 + x, y: y, channel: c], UInt8(k * 7),
                                       "image \(i) channel \(c) pixel (\(x), \(y))")
                    }
                }
            }
        }
        let file = path("grid.png")
        try PNG.writeGrid(images, columns: 2, padding: 0, to: file, overwrite: false)
        assertImagesEqual(try Netpbm.decodePNG(file).image, grid)
    }

    // MARK: overwrite and errors

    /// Images can come from a file (a run's samples): a shape the grid cannot lay out is a thrown error.
    func testGridRefusesImpossibleShapesWithAnError() {
        for shape in [[7], [2, 2, 4, 4], [0, 1, 4, 4], [1, 1, 4]] {
            XCTAssertThrowsError(try PNG.grid(Tensor(zeros: shape), columns: 10)) { error in
                guard case PNGError.invalidGrid(let found, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(found, shape)
            }
        }
        XCTAssertThrowsError(try PNG.grid(Tensor(zeros: [1, 1, 2, 2]), columns: 0))
    }

    func testRefusesToOverwrite() throws {
        let file = path("keep.png")
        let first = patternImage(width: 4, height: 4, channels: 1)
        let second = Image8(width: 2, height: 2, channels: 3, repeating: 200)
        try PNG.write(first, to: file, overwrite: false)
        let before = try Data(contentsOf: URL(fileURLWithPath: file))

        XCTAssertThrowsError(try PNG.write(second, to: file, overwrite: false)) { error in
            XCTAssertEqual(error as? PNGError, .fileExists(path: file))
            XCTAssertTrue("\(error)".contains(file), "error should name the file: \(error)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file)), before, "the refused write changed the file")
        XCTAssertThrowsError(try PNG.writeGrid(Tensor(zeros: [1, 1, 2, 2]), columns: 1, to: file, overwrite: false))

        try PNG.write(second, to: file, overwrite: true)
        assertImagesEqual(try PNG.read(file), second)
    }

    func testWriteIntoMissingDirectoryNamesThePath() {
        let file = path("no-such-dir/out.png")
        XCTAssertThrowsError(try PNG.write(Image8(width: 1, height: 1, channels: 1, repeating: 0), to: file, overwrite: false)) { error in
            XCTAssertTrue("\(error)".contains(file), "error should name the file: \(error)")
        }
    }

    func testMissingFileErrorNamesThePath() {
        let file = path("missing.png")
        assertReadFails(file)
    }

    func testCorruptFileErrorNamesThePath() throws {
        // Deterministic "random" bytes (a 64-bit LCG), which cannot start with the PNG signature.
        var state: UInt64 = 0x9E3779B97F4A7C15
        let bytes = (0..<1000).map { _ -> UInt8 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let file = path("corrupt.png")
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        assertReadFails(file)
    }

    func testTruncatedFileErrorNamesThePath() throws {
        // Noise compresses badly, so half the file cuts through the image data, not just the trailer.
        var state: UInt32 = 12345
        let pixels = (0..<(32 * 32 * 3)).map { _ -> UInt8 in
            state = state &* 1664525 &+ 1013904223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        let whole = path("whole.png"), cut = path("truncated.png")
        try PNG.write(Image8(width: 32, height: 32, channels: 3, pixels: pixels), to: whole, overwrite: false)
        let data = try Data(contentsOf: URL(fileURLWithPath: whole))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: cut))
        assertReadFails(cut)
    }

    // MARK: helpers

    func assertReadFails(_ file: String, line: UInt = #line) {
        XCTAssertThrowsError(try PNG.read(file), line: line) { error in
            guard case .libpng(let path, _, let message)? = error as? PNGError else {
                return XCTFail("expected PNGError.libpng, got \(error)", line: line)
            }
            XCTAssertEqual(path, file, line: line)
            XCTAssertFalse(message.isEmpty, "libpng's message should be passed on", line: line)
            XCTAssertTrue("\(error)".contains(file), "error should name the file: \(error)", line: line)
        }
    }

    func assertImagesEqual(_ actual: Image8, _ expected: Image8, file: StaticString = #filePath, line: UInt = #line) {
        guard (actual.width, actual.height, actual.channels) == (expected.width, expected.height, expected.channels) else {
            return XCTFail("size \(actual.width)×\(actual.height)×\(actual.channels), expected "
                           + "\(expected.width)×\(expected.height)×\(expected.channels)", file: file, line: line)
        }
        if let i = expected.pixels.indices.first(where: { actual.pixels[$0] != expected.pixels[$0] }) {
            let differing = zip(actual.pixels, expected.pixels).filter { $0 != $1 }.count
            let p = i / expected.channels
            XCTFail("\(differing) bytes differ; first at pixel (\(p % expected.width), \(p / expected.width)) channel "
                    + "\(i % expected.channels): \(actual.pixels[i]) vs expected \(expected.pixels[i])", file: file, line: line)
        }
    }
}

/// Binary PGM/PPM (P5/P6, maxval 255) to and from `Image8`, and pngtopnm as an independent PNG decoder.
enum Netpbm {
    struct ParseError: Error, CustomStringConvertible { let description: String }

    /// `pngtopnm file`, parsed.
    static func decodePNG(_ path: String) throws -> (magic: String, image: Image8) {
        try parse(ExternalTool.run("pngtopnm", [path]))
    }

    /// Parses "P5|P6 <ws> width <ws> height <ws> maxval <one ws> bytes", with '#' comments in the header.
    static func parse(_ data: Data) throws -> (magic: String, image: Image8) {
        let bytes = [UInt8](data)
        var i = 0
        func token() throws -> String {
            while i < bytes.count {  // skip whitespace and comments
                if bytes[i] == UInt8(ascii: "#") {
                    while i < bytes.count && bytes[i] != UInt8(ascii: "\n") { i += 1 }
                } else if [9, 10, 13, 32].contains(bytes[i]) {
                    i += 1
                } else { break }
            }
            let start = i
            while i < bytes.count && ![9, 10, 13, 32, UInt8(ascii: "#")].contains(bytes[i]) { i += 1 }
            guard i > start else { throw ParseError(description: "PNM: header ends early") }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }
        let magic = try token()
        guard magic == "P5" || magic == "P6" else { throw ParseError(description: "PNM: magic \(magic), expected P5 or P6") }
        guard let width = Int(try token()), let height = Int(try token()), let maxval = Int(try token()) else {
            throw ParseError(description: "PNM: bad header numbers")
        }
        guard maxval == 255 else { throw ParseError(description: "PNM: maxval \(maxval), expected 255") }
        i += 1  // the single whitespace byte after maxval
        let channels = magic == "P6" ? 3 : 1
        let size = width * height * channels
        guard bytes.count - i == size else {
            throw ParseError(description: "PNM: \(bytes.count - i) data bytes for \(width)×\(height)×\(channels)")
        }
        return (magic, Image8(width: width, height: height, channels: channels, pixels: Array(bytes[i...])))
    }

    /// The image as a binary PGM (grey) or PPM (RGB) file.
    static func pnmData(_ image: Image8) -> Data {
        var data = Data("\(image.channels == 3 ? "P6" : "P5")\n\(image.width) \(image.height)\n255\n".utf8)
        data.append(contentsOf: image.pixels)
        return data
    }
}

/// Runs command-line tools the tests use as independent references (netpbm, gzip).
enum ExternalTool {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Runs `name arguments`, returning its standard output; fails the test (never skips) when the
    /// tool is missing, and throws when it exits with a non-zero status.
    static func run(_ name: String, _ arguments: [String],
                    file: StaticString = #filePath, line: UInt = #line) throws -> Data {
        guard let executable = ChildProcess.locate(name) else {
            let message = "\(name) not found on PATH: install the test tools with scripts/setup (netpbm and gzip)"
            XCTFail(message, file: file, line: line)
            throw Failure(description: message)
        }
        let messages = NSTemporaryDirectory() + "fusion-png-tool-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: messages) }
        let result = try ChildProcess.run(executable, arguments, standardError: .file(messages))
        guard result.ending.succeeded else {
            throw Failure(description: "\(name) \(arguments.joined(separator: " ")) exited with \(result.ending.description): "
                          + ((try? String(contentsOfFile: messages, encoding: .utf8)) ?? ""))
        }
        let data = result.output
        return data
    }
}

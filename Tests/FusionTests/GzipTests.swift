// Gzip tests: files made by the gzip tool are read back exactly, files we write are checked with
// `gzip -dc`, truncated and missing files give errors naming the file, and the real Fashion-MNIST
// label file (when installed) has the IDX header and item count it should.
import Foundation
import XCTest
@testable import Fusion

final class GzipTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("fusion-gzip-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// A compressible ramp, then LCG noise (3 MB by default: the compressed stream crosses zlib's
    /// internal buffer boundaries and the output is not a multiple of Gzip's read size).
    func sampleBytes(count: Int = 3_000_000) -> [UInt8] {
        var state: UInt32 = 2024
        return (0..<count).map { i -> UInt8 in
            if i < count / 2 { return UInt8(truncatingIfNeeded: i / 1000) }
            state = state &* 1664525 &+ 1013904223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }

    /// Writes `bytes` to `name` and compresses it with the gzip tool, returning the .gz path.
    func gzipWithTool(_ bytes: [UInt8], name: String) throws -> String {
        let plain = path(name), compressed = path(name + ".gz")
        try Data(bytes).write(to: URL(fileURLWithPath: plain))
        try ExternalTool.run("gzip", ["-c", "-n", plain]).write(to: URL(fileURLWithPath: compressed))
        return compressed
    }

    func testReadsFileMadeByGzipTool() throws {
        let bytes = sampleBytes()
        let file = try gzipWithTool(bytes, name: "sample")
        assertBytesEqual(try Gzip.readAll(file), bytes)
    }

    func testReadsEmptyFile() throws {
        let file = try gzipWithTool([], name: "empty")
        XCTAssertEqual(try Gzip.readAll(file), [])
    }

    func testWriteDecodesWithGzipToolAndRoundTrips() throws {
        let bytes = sampleBytes(count: 100_000)
        let file = path("ours.gz")
        try Gzip.write(bytes, to: file, overwrite: false)
        assertBytesEqual([UInt8](try ExternalTool.run("gzip", ["-dc", file])), bytes)
        assertBytesEqual(try Gzip.readAll(file), bytes)
    }

    func testWriteRefusesToOverwrite() throws {
        let file = path("keep.gz")
        try Gzip.write([1, 2, 3], to: file, overwrite: false)
        XCTAssertThrowsError(try Gzip.write([4], to: file, overwrite: false)) { error in
            XCTAssertEqual(error as? GzipError, .fileExists(path: file))
            XCTAssertTrue("\(error)".contains(file), "error should name the file: \(error)")
        }
        XCTAssertEqual(try Gzip.readAll(file), [1, 2, 3])
        try Gzip.write([4], to: file, overwrite: true)
        XCTAssertEqual(try Gzip.readAll(file), [4])
    }

    func testTruncatedStreamThrowsNamingTheFile() throws {
        let file = try gzipWithTool(sampleBytes(), name: "whole")
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        // Cut in the middle of the deflate data, and cut only the 8-byte trailer (CRC and length).
        for (name, keep) in [("half.gz", data.count / 2), ("no-trailer.gz", data.count - 8)] {
            let cut = path(name)
            try data.prefix(keep).write(to: URL(fileURLWithPath: cut))
            XCTAssertThrowsError(try Gzip.readAll(cut), name) { error in
                guard case .readFailed(let path, _)? = error as? GzipError else {
                    return XCTFail("\(name): expected GzipError.readFailed, got \(error)")
                }
                XCTAssertEqual(path, cut)
                XCTAssertTrue("\(error)".contains(cut), "error should name the file: \(error)")
            }
        }
    }

    func testMissingFileThrowsNamingTheFile() {
        let file = path("missing.gz")
        XCTAssertThrowsError(try Gzip.readAll(file)) { error in
            guard case .cannotOpen(let path, let message)? = error as? GzipError else {
                return XCTFail("expected GzipError.cannotOpen, got \(error)")
            }
            XCTAssertEqual(path, file)
            XCTAssertTrue(message.contains("No such file"), "cause should be given: \(message)")
        }
    }

    func testPlainFileIsReadTransparentlyUnlessRefused() throws {
        let bytes = Array("not gzip at all\n".utf8)
        let file = path("plain.txt")
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        XCTAssertEqual(try Gzip.readAll(file), bytes)
        XCTAssertThrowsError(try Gzip.readAll(file, allowUncompressed: false)) { error in
            XCTAssertEqual(error as? GzipError, .notGzip(path: file))
        }
    }

    func testFashionMNISTTestLabels() throws {
        let file = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
        guard FileManager.default.fileExists(atPath: file) else {
            throw XCTSkip("\(file) is not installed; run scripts/setup (Debian package dataset-fashion-mnist)")
        }
        let bytes = try Gzip.readAll(file, allowUncompressed: false)
        XCTAssertEqual(bytes.count, 8 + 10_000)
        guard bytes.count >= 8 else { return }
        let word = { (offset: Int) in bytes[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        XCTAssertEqual(word(0), 0x0000_0801, "IDX magic: unsigned bytes, one dimension")
        XCTAssertEqual(word(4), 10_000)
        XCTAssertTrue(bytes[8...].allSatisfy { $0 < 10 }, "labels are classes 0...9")
    }

    func testFashionMNISTTrainImagesAreReadQuickly() throws {
        // The largest file (26 MB compressed, 47 MB out): checks the chunked read end to end.
        let file = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
        guard FileManager.default.fileExists(atPath: file) else {
            throw XCTSkip("\(file) is not installed; run scripts/setup (Debian package dataset-fashion-mnist)")
        }
        let start = Date()
        let bytes = try Gzip.readAll(file, allowUncompressed: false)
        let seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(bytes.count, 16 + 60_000 * 28 * 28)
        XCTAssertEqual(Array(bytes.prefix(4)), [0, 0, 8, 3], "IDX magic: unsigned bytes, three dimensions")
        // Generous: zlib inflates at hundreds of MB/s; this catches byte-at-a-time reading, not noise.
        XCTAssertLessThan(seconds, 5, "reading \(file) took \(seconds) s")
    }

    func assertBytesEqual(_ actual: [UInt8], _ expected: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        if let i = (0..<min(actual.count, expected.count)).first(where: { actual[$0] != expected[$0] }) {
            XCTFail("first difference at byte \(i): \(actual[i]) vs expected \(expected[i]) "
                    + "(\(actual.count) bytes, expected \(expected.count))", file: file, line: line)
        } else if actual.count != expected.count {
            XCTFail("\(actual.count) bytes, expected \(expected.count) (equal up to the shorter)", file: file, line: line)
        }
    }
}

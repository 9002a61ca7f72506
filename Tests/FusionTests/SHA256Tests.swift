// SHA-256 against the FIPS 180-4 example vectors (NIST CSRC "Examples with Intermediate Values",
// SHA256.pdf and SHA2_Additional.pdf) and against the system's `sha256sum` on a file.
import XCTest
import Foundation
@testable import Fusion

final class SHA256Tests: XCTestCase {
    func testOneBlockMessageABC() {
        XCTAssertEqual(SHA256.hexDigest(Array("abc".utf8)),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testEmptyMessage() {
        XCTAssertEqual(SHA256.hexDigest([UInt8]()),
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    /// The 448-bit message: its padding does not fit the first block, so it takes two.
    func testTwoBlockMessage448Bits() {
        let message = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        XCTAssertEqual(message.utf8.count * 8, 448)
        XCTAssertEqual(SHA256.hexDigest(Array(message.utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    /// One million "a": many blocks, fed in uneven pieces to exercise the streaming path.
    func testMillionAInPieces() {
        var hasher = SHA256()
        var fed = 0
        var piece = 1
        while fed < 1_000_000 {
            let n = min(piece, 1_000_000 - fed)
            hasher.update([UInt8](repeating: UInt8(ascii: "a"), count: n))
            fed += n
            piece = piece * 3 % 1001 + 1
        }
        XCTAssertEqual(SHA256.hex(hasher.finalize()),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Every length from 0 to 130 bytes crosses the 55/56/63/64-byte padding boundaries; compared with
    /// coreutils' sha256sum, an independent implementation, when it is installed.
    func testFileDigestMatchesSha256sum() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/sha256sum") else {
            throw XCTSkip("sha256sum is not installed")
        }
        let directory = NSTemporaryDirectory() + "fusion-sha-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var paths: [String] = []
        for length in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 130, 100_003] {
            let path = "\(directory)/m\(length)"
            try Data((0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }).write(to: URL(fileURLWithPath: path))
            paths.append(path)
        }
        let output = try ChildProcess.run("/usr/bin/sha256sum", paths, standardError: .inherited).text
        let expected = output.split(separator: "\n").map { String($0.prefix(64)) }
        XCTAssertEqual(expected.count, paths.count)
        for (path, digest) in zip(paths, expected) {
            XCTAssertEqual(try SHA256.hexDigest(ofFile: path), digest, path)
        }
    }
}

// The `fusion` command refuses bad input with a message that says what to do, and never replaces an
// existing run's files unasked. Runs the built executable beside the test bundle.
import XCTest
import Foundation
import Fusion

final class CommandLineTests: XCTestCase {
    private func fusion(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let result = try FusionBinary.run(arguments)
        return (result.status, result.output)
    }

    func testMissingDataFileNamesTheFileAndTheSetupCommand() throws {
        let empty = try temporaryDirectory()
        let (status, output) = try fusion(["reference", "train", "--data", empty, "--out", empty + "/run"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("train-images-idx3-ubyte.gz is missing"), output)
        XCTAssertTrue(output.contains("scripts/setup"), output)
    }

    func testForeignDataFileIsRefusedWithItsMagicNumber() throws {
        let data = try temporaryDirectory()
        // Label bytes where images belong: a valid gzip whose IDX magic number is the labels' one.
        try Gzip.write([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3], to: data + "/train-images-idx3-ubyte.gz", overwrite: false)
        try Gzip.write([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3], to: data + "/train-labels-idx1-ubyte.gz", overwrite: false)
        let (status, output) = try fusion(["reference", "train", "--data", data, "--out", data + "/run"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("magic number 0x00000801, expected 0x00000803"), output)
    }

    func testExistingRunIsNotOverwrittenUnasked() throws {
        let run = try temporaryDirectory()
        try "earlier results".write(toFile: run + "/log.h5", atomically: true, encoding: .utf8)
        let (status, output) = try fusion(["reference", "train", "--out", run])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("exists already") && output.contains("--overwrite"), output)
        XCTAssertEqual(try String(contentsOfFile: run + "/log.h5", encoding: .utf8), "earlier results")
    }

    func testInvalidOptionValueIsRefused() throws {
        let (status, output) = try fusion(["reference", "train", "--epochs", "0"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("--epochs must be at least 1"), output)
    }
}

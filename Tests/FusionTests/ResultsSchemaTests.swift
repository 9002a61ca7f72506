// ResultsSchema: a results file is checked against the layout RunLog writes before report or analyze
// read it; a damaged one is an error naming the file, the object, what was expected and what was found.
import XCTest
import Foundation
import Fusion
@testable import Experiments

final class ResultsSchemaTests: XCTestCase {
    /// A run's log as fusion train writes it (run "a"): two rows of train and eval, samples at step 5.
    func writeLog(_ path: String) throws {
        let log = try RunLog(path: path, runName: "a", config: "name: a\n", seed: 0, recipe: "chameleon",
                             attributes: ["parameter_count": 1000, "non_embedding_parameter_count": 800], overwrite: false)
        for step in [5, 10] {
            try log.append("train", step: step, [("loss", 2.5), ("flops_counted", Double(step) * 1e9)])
            try log.append("eval", step: step, [("fd_fmnist", 40.0 / Double(step)), ("flops_counted", Double(step) * 1e9)])
        }
        try log.appendSamples(step: 5, images: Tensor(repeating: 0.5, shape: [2, 1, 4, 4]), labels: [1, 2], prompts: ["a", "b"])
        try log.file.close()
    }

    /// What `body` throws, as text ("no error" when it throws nothing).
    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    func testAnUndamagedLogPassesAndIsReported() throws {
        let root = try temporaryDirectory()
        try writeLog(root + "/log.h5")
        XCTAssertNoThrow(try ResultsSchema.validate(try HDF5File.open(root + "/log.h5")))
        let markdown = try Report.write(results: root + "/log.h5", to: root + "/report")
        XCTAssert(markdown.contains("| a | chameleon | 1000 (800) | 10 |"), markdown)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/report/a-step5.png"))
    }

    /// Issue 17: a 7-byte uint8 samples dataset trapped in PNG.grid; it is an error naming the dataset.
    func testSevenByteSamplesAreAnErrorNamingTheDataset() throws {
        let root = try temporaryDirectory()
        let path = root + "/log.h5"
        try writeLog(path)
        do {
            let file = try HDF5File.open(path, writable: true)
            try file.root.remove("runs/a/samples/step5")
            try file.root.createDataset("runs/a/samples/step5", values: [UInt8](repeating: 7, count: 7), shape: [7])
            try file.close()
        }
        let error = message { try Report.write(results: path, to: root + "/report") }
        XCTAssert(error.contains(path) && error.contains("/runs/a/samples/step5") && error.contains("[N, C, S, S]")
                  && error.contains("shape [7]"), error)
        // The same through the command: status 1 and the message, no trap.
        let report = try FusionBinary.run(["report", path, "--out", root + "/report"])
        XCTAssertEqual(report.status, 1, report.output)
        XCTAssert(report.output.contains("fusion: ") && report.output.contains("/runs/a/samples/step5"), report.output)
        XCTAssertFalse(report.output.contains("Fatal error"), report.output)
    }

    func testASeriesShorterThanItsStepAxisIsAnErrorNamingIt() throws {
        let root = try temporaryDirectory()
        let path = root + "/log.h5"
        try writeLog(path)
        do {
            let file = try HDF5File.open(path, writable: true)
            try file.root.dataset("runs/a/eval/fd_fmnist").truncate(to: 1)
            try file.close()
        }
        let report = message { try Report.write(results: path, to: root + "/report") }
        XCTAssert(report.contains("/runs/a/eval/fd_fmnist") && report.contains("2 values") && report.contains("found 1 value"), report)
        let analysis = message { try ScalingAnalysis.run(results: path, to: root + "/analysis") }
        XCTAssert(analysis.contains("/runs/a/eval/fd_fmnist"), analysis)
    }

    func testStepsMustIncrease() throws {
        let root = try temporaryDirectory()
        let path = root + "/log.h5"
        try writeLog(path)
        do {
            let file = try HDF5File.open(path, writable: true)
            let step = try file.root.dataset("runs/a/train/step")
            try step.truncate(to: 0)
            try step.append([Int64(5), 5])
            try file.close()
        }
        let error = message { try ResultsSchema.validate(try HDF5File.open(path)) }
        XCTAssert(error.contains("/runs/a/train/step") && error.contains("strictly increasing"), error)
    }

    func testANewerSchemaVersionIsRefusedSayingToUpdate() throws {
        let root = try temporaryDirectory()
        let path = root + "/log.h5"
        try writeLog(path)
        do {
            let file = try HDF5File.open(path, writable: true)
            try file.root.setAttribute("schema_version", ResultsSchema.version + 1)
            try file.close()
        }
        for error in [message { try Report.write(results: path, to: root + "/report") },
                      message { try ScalingAnalysis.run(results: path, to: root + "/analysis") }] {
            XCTAssert(error.contains("schema_version") && error.contains("newer Fusion") && error.contains("update Fusion"), error)
        }
    }

    func testAFileOfAnotherKindIsNotAResultsFile() throws {
        let root = try temporaryDirectory()
        let path = root + "/other.h5"
        let file = try HDF5File.create(path)
        try file.root.setAttribute("kind", "fusion-checkpoint")
        try file.close()
        let error = message { try Report.write(results: path, to: root + "/report") }
        XCTAssert(error.contains("not a Fusion results file") && error.contains("schema_version"), error)
    }
}

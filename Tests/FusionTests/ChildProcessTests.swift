// ChildProcess: what a child reads, where its output goes, and how its ending is told.
import XCTest
import Foundation
import Fusion

final class ChildProcessTests: XCTestCase {
    func testStandardInputIsEmptyAndOutputIsCapturedWholeWithItsStatus() throws {
        let cat = try ChildProcess.run("cat", [])  // would wait forever on an inherited terminal or pipe
        XCTAssertEqual(cat.ending, try ChildProcess.run("true", []).ending)
        XCTAssertTrue(cat.ending.succeeded)
        XCTAssertEqual(cat.output, Data())

        // 1 MiB, far past a pipe's buffer: read to the end before waiting, or both would stall.
        let large = try ChildProcess.run("/bin/sh", ["-c", "head -c 1048576 /dev/zero; echo to-stderr >&2; exit 3"])
        XCTAssertEqual(large.ending.status, 3)
        XCTAssertNil(large.ending.signal)
        XCTAssertFalse(large.ending.succeeded)
        XCTAssertEqual(large.output.count, 1_048_576 + "to-stderr\n".count)
        XCTAssertTrue(large.text.hasSuffix("to-stderr\n"))
    }

    func testStandardErrorCanGoElsewhereAndFilesAreAppendedTo() throws {
        let directory = NSTemporaryDirectory() + "fusion-child-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let messages = directory + "/messages"
        let separate = try ChildProcess.run("/bin/sh", ["-c", "echo out; echo err >&2"], standardError: .file(messages))
        XCTAssertEqual(separate.text, "out\n")
        XCTAssertEqual(try String(contentsOfFile: messages, encoding: .utf8), "err\n")
        let discarded = try ChildProcess.run("/bin/sh", ["-c", "echo out; echo err >&2"], standardError: .discarded)
        XCTAssertEqual(discarded.text, "out\n")

        let log = directory + "/log"
        for word in ["one", "two"] {
            let child = try ChildProcess.start("/bin/sh", ["-c", "echo \(word); echo \(word)-err >&2"],
                                               standardOutput: .file(log), standardError: .file(log))
            XCTAssertTrue(child.wait().succeeded)
        }
        XCTAssertEqual(try String(contentsOfFile: log, encoding: .utf8), "one\none-err\ntwo\ntwo-err\n")
    }

    func testTheEnvironmentIsTheOneGiven() throws {
        let result = try ChildProcess.run("/usr/bin/env", [], environment: ["FUSION_CHILD_TEST": "a b=c"])
        XCTAssertEqual(result.text, "FUSION_CHILD_TEST=a b=c\n")
    }

    func testATimedWaitGivesUpAndASignalIsToldApartFromAStatus() throws {
        let sleeper = try ChildProcess.start("/bin/sleep", ["30"])
        XCTAssertNil(sleeper.poll())
        XCTAssertNil(sleeper.wait(seconds: 0.2))
        sleeper.send(SIGTERM)
        let ending = try XCTUnwrap(sleeper.wait(seconds: 10))
        XCTAssertEqual(ending.signal, SIGTERM)
        XCTAssertEqual(ending.status, 128 + SIGTERM)
        XCTAssertEqual(ending.description, "signal \(SIGTERM)")

        let exited = try ChildProcess.run("/bin/sh", ["-c", "exit 143"]).ending
        XCTAssertNil(exited.signal, "an exit status of 143 is not a signal")
        XCTAssertEqual(exited.status, 143)
    }

    func testAMissingProgramIsAClearError() {
        XCTAssertThrowsError(try ChildProcess.run("fusion-no-such-program", [])) { error in
            XCTAssertTrue("\(error)".contains("fusion-no-such-program is not on PATH"), "\(error)")
        }
        XCTAssertThrowsError(try ChildProcess.start("/nonexistent/program", [])) { error in
            XCTAssertTrue("\(error)".contains("cannot run /nonexistent/program"), "\(error)")
        }
    }
}

// A sweep's live status: the progress lines it reads from its runs' output, and its ETA.
import XCTest
import Foundation
@testable import Experiments

final class SweepProgressTests: XCTestCase {
    func testAProgressLineIsReadAsTrainPrintsIt() {
        let line = SweepProgress.ProgressLine("step 40/200  loss 5.1234  text_loss 5.0  image_loss 5.2  5718 tok/s  ETA 0m03s")
        XCTAssertEqual(line, SweepProgress.ProgressLine(step: 40, total: 200, loss: "5.1234"))
        XCTAssertEqual(SweepProgress.ProgressLine("step 3/7"), SweepProgress.ProgressLine(step: 3, total: 7, loss: nil))
        for other in ["eval @20: text_ppl 804.3", "steps 3/7", "step 3/0", "step x/7", "step", "", "fusion train: chameleon"] {
            XCTAssertNil(SweepProgress.ProgressLine(Substring(other)), other)
        }
    }

    func testTheLastProgressLineOfAnOutputFileIsFound() throws {
        let path = NSTemporaryDirectory() + "fusion-sweep-progress-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertNil(SweepProgress.lastStep(inFile: path), "no file yet")
        try "fusion train: showo\ntokenizer: cached\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertNil(SweepProgress.lastStep(inFile: path), "no step logged yet")
        // Lines of an earlier, resumed attempt, then a live line rewritten with \r, then an eval line.
        let filler = String(repeating: "x", count: 40_000)  // past the 16 KiB read from the end
        try ("step 1/9  loss 9.0\n\(filler)\nstep 5/9  loss 6.5\r\u{1B}[2Kstep 6/9  loss 6.25\neval @6: text_ppl 12\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(SweepProgress.lastStep(inFile: path), SweepProgress.ProgressLine(step: 6, total: 9, loss: "6.25"))
    }

    func testTheStatusLineCountsRunningRunsByTheirShareOfSteps() {
        let start = Date(timeIntervalSince1970: 1_000)
        let progress = SweepProgress(total: 4, isTerminal: false, started: start)
        XCTAssertEqual(progress.statusLine(running: [("a", nil)], now: start.addingTimeInterval(5)),
                       "sweep: 0/4 runs done  a starting  ETA …")
        progress.runEnded()
        // 1 run done + half of another = 1.5 of 4 in 60 s: 2.5 left at that pace is 100 s.
        let line = progress.statusLine(running: [("b", .init(step: 50, total: 100, loss: "4.5")), ("c", nil)],
                                       now: start.addingTimeInterval(60))
        XCTAssertEqual(line, "sweep: 1/4 runs done  b step 50/100 loss 4.5  c starting  ETA 1m40s")
    }
}

// fusion report's page (report.html): one self-contained file with the runs' table, plots and labelled
// samples, checked as written and then in a real headless browser (Debian's chromium): it loads without
// errors, every image resolves, and a screenshot of it is not blank.
import XCTest
import Foundation
import Fusion
@testable import Experiments

final class ReportPageTests: XCTestCase {
    /// A sweep's results as fusion writes them: a run of each recipe, 3 evaluations, 4 labelled samples each.
    func writeResults(_ path: String) throws {
        for (index, recipe) in ["chameleon", "showo", "transfusion"].enumerated() {
            let name = index == 0 ? "run <&> \"quoted\"" : "run-\(recipe)"
            let log = try RunLog(path: "\(path).\(index)", runName: name, config: "name: x\n", seed: 0, recipe: recipe,
                                 attributes: ["parameter_count": 1000, "non_embedding_parameter_count": 800], overwrite: false)
            for step in [10, 20, 30] {
                let flops = Double(step) * 1e9 * Double(index + 1)
                try log.append("train", step: step, [("loss", 7 - Double(step) / 10 - Double(index) / 4), ("flops_counted", flops)])
                try log.append("eval", step: step, [("fd_fmnist", 300 / Double(step) + Double(index)), ("flops_counted", flops)])
            }
            var pixels = [Float](repeating: 0, count: 4 * 28 * 28)
            for i in pixels.indices where (i / 28) % 7 < 3 { pixels[i] = Float(i % 28) / 27 }
            try log.appendSamples(step: 30, images: Tensor(pixels, shape: [4, 1, 28, 28]), labels: [0, 3, 7, 9],
                                  prompts: ["T-shirt/top", "dress", "sneaker", "ankle boot"])
            try log.file.close()
        }
        let merged = try HDF5File.create(path, overwrite: true)
        try merged.root.setAttribute("schema_version", RunLog.schemaVersion)
        for attribute in ["created", "git_commit", "machine", "versions"] { try merged.root.setAttribute(attribute, "test") }
        for index in 0..<3 {
            let file = try HDF5File.open("\(path).\(index)")
            let runs = try file.root.group("runs")
            for name in try runs.childNames { try merged.root.copy(try runs.group(name), to: "runs/\(name)") }
        }
        try merged.close()
    }

    /// Samples logged before prompts were name their classes from their labels; with neither, nothing.
    func testSamplesWithoutPromptsAreNamedByTheirLabels() throws {
        let root = try temporaryDirectory()
        let file = try HDF5File.create(root + "/old.h5", overwrite: false)
        let group = try file.root.createGroup("samples")
        try group.createDataset("step5", values: [UInt8](repeating: 0, count: 2 * 4), shape: [2, 1, 2, 2])
        XCTAssertEqual(try Report.sampleCaptions(group, "step5", count: 2), [])
        try group.createDataset("step5_labels", values: [Int32(7), 12], shape: [2])
        XCTAssertEqual(try Report.sampleCaptions(group, "step5", count: 2), ["sneaker", "class 12"])
        try group.dataset("step5").setAttribute("prompts", "a dark sneaker\na bag")
        XCTAssertEqual(try Report.sampleCaptions(group, "step5", count: 2), ["a dark sneaker", "a bag"])
        try file.close()
    }

    func testThePageHoldsTheTablePlotsAndLabelledSamplesInOneFile() throws {
        let root = try temporaryDirectory()
        try writeResults(root + "/results.h5")
        let report = try FusionBinary.run(["report", root + "/results.h5", "--out", root + "/report"])
        XCTAssertEqual(report.status, 0, report.output)
        XCTAssertTrue(report.output.contains("report.html"), report.output)
        let page = try String(contentsOfFile: root + "/report/report.html", encoding: .utf8)
        XCTAssertTrue(page.hasPrefix("<!DOCTYPE html>"))
        XCTAssertTrue(page.contains("<td>run &lt;&amp;&gt; &quot;quoted&quot;</td>"), "names are escaped")
        XCTAssertFalse(page.contains("run <&>"))
        XCTAssertEqual(page.components(separatedBy: "<svg").count - 1, 2, "the loss curves and FD against FLOPs")
        XCTAssertEqual(page.components(separatedBy: "<polyline").count - 1, 6, "3 loss curves, 3 recipes' FD")
        XCTAssertEqual(page.components(separatedBy: "src=\"data:image/png;base64,").count - 1, 12, "4 samples a run, embedded")
        for name in ["T-shirt/top", "dress", "sneaker", "ankle boot"] {
            XCTAssertEqual(page.components(separatedBy: "<figcaption>\(name)</figcaption>").count - 1, 3, name)
        }
        XCTAssertEqual(page.components(separatedBy: root).count - 1, 1, "no path but the results file's, as it was given")
        XCTAssertFalse(page.contains("src=\"http") || page.contains("href=\"http"), "nothing fetched from elsewhere")

        // An embedded image is the sample itself: decoded, its pixels are the logged bytes.
        let first = try XCTUnwrap(page.range(of: "src=\"data:image/png;base64,"))
        let encoded = page[first.upperBound...].prefix { $0 != "\"" }
        let png = root + "/first.png"
        try XCTUnwrap(Data(base64Encoded: String(encoded))).write(to: URL(fileURLWithPath: png))
        let image = try PNG.read(png)
        XCTAssertEqual([image.width, image.height, image.channels], [28, 28, 1])
        let logged = try HDF5File.open(root + "/results.h5").root.dataset("runs/run <&> \"quoted\"/samples/step30").read(as: UInt8.self)
        XCTAssertEqual(image.pixels, Array(logged.prefix(28 * 28)))
    }

    func testThePageLoadsInAHeadlessBrowser() throws {
        guard let chromium = ["chromium", "chromium-browser", "google-chrome"].lazy.compactMap(ChildProcess.locate).first else {
            throw XCTSkip("no chromium here (Debian package chromium; scripts/setup installs it)")
        }
        let root = try temporaryDirectory()
        try writeResults(root + "/results.h5")
        let report = try FusionBinary.run(["report", root + "/results.h5", "--out", root + "/report"])
        XCTAssertEqual(report.status, 0, report.output)
        // The page as written, with a probe in front that counts script and resource errors and, once
        // everything has loaded, writes what it found into the title for --dump-dom to show.
        let page = try String(contentsOfFile: root + "/report/report.html", encoding: .utf8)
        let probe = """
            <script>
            var errors = 0;
            addEventListener("error", function () { errors += 1; }, true);
            addEventListener("load", function () {
              var broken = Array.from(document.images).filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
              document.title = "probe images " + document.images.length + " broken " + broken + " errors " + errors;
            });
            </script>
            """
        let probed = root + "/report/probed.html"
        try page.replacingOccurrences(of: "<head>", with: "<head>" + probe).write(toFile: probed, atomically: true, encoding: .utf8)
        let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--user-data-dir=\(root)/profile", "--virtual-time-budget=10000"]
        let dom = try ChildProcess.run(chromium, flags + ["--dump-dom", "file://\(probed)"], standardError: .discarded)
        XCTAssertTrue(dom.ending.succeeded, dom.text)
        XCTAssertTrue(dom.text.contains("<title>probe images 12 broken 0 errors 0</title>"), String(dom.text.prefix(2000)))

        let shot = root + "/shot.png"
        let screenshot = try ChildProcess.run(chromium, flags + ["--window-size=1200,1600", "--screenshot=\(shot)",
                                                                 "file://\(root)/report/report.html"])
        XCTAssertTrue(screenshot.ending.succeeded, screenshot.text)
        let image = try PNG.read(shot)
        XCTAssertEqual([image.width, image.height], [1200, 1600])
        // Not blank: the white page carries dark text and lines, and the samples' black backgrounds.
        let dark = stride(from: 0, to: image.pixels.count, by: image.channels).filter { image.pixels[$0] < 64 }.count
        XCTAssertGreaterThan(dark, image.width * image.height / 200, "a blank or nearly blank screenshot")
        XCTAssertLessThan(dark, image.width * image.height / 2)
    }
}

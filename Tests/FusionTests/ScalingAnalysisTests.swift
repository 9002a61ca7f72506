// The scaling analysis (fusion analyze): least-squares power laws recovered exactly from synthetic
// ones, R² against a hand computation, FLOP parity against its closed form, the spread across seeds, and
// degenerate inputs (one run, a zero or negative metric, a perfect accuracy) left out with a note.
import XCTest
import Foundation
import Fusion
@testable import Experiments

final class ScalingAnalysisTests: XCTestCase {
    typealias Analysis = ScalingAnalysis

    /// Budgets from 1e12 to 1e15 FLOPs, unevenly spaced so that the fit is not helped by symmetry.
    let budgets = [1e12, 3.7e12, 2e13, 1.1e14, 1e15]

    /// The values are exact powers, so the fit must recover them to rounding: the log10 of five doubles
    /// and a few sums of them lose at most ~1e-15 relative each, so 1e-12 leaves three digits of margin.
    func testFitRecoversAnExactPowerLaw() throws {
        let fit = try Analysis.fit(flops: budgets, values: budgets.map { 3 * pow($0, -0.25) })
        XCTAssertEqual(fit.slope, -0.25, accuracy: 1e-12)
        XCTAssertEqual(fit.intercept, log10(3), accuracy: 1e-12)
        XCTAssertEqual(fit.rSquared ?? 0, 1, accuracy: 1e-12)
        XCTAssertEqual(fit.count, 5)
        XCTAssertEqual(fit.flopsRange, 1e12...1e15)
    }

    /// log10 C = 0, 1, 2 and log10 y = 0, 2, 1: by hand, mean x = mean y = 1, Sxx = 2, Sxy = 1, so slope
    /// 0.5 and intercept 0.5; residuals −0.5, 1, −0.5 give SS_res = 1.5 against SS_tot = 2: R² = 0.25.
    func testRSquaredMatchesAHandComputation() throws {
        let fit = try Analysis.fit(flops: [1, 10, 100], values: [1, 100, 10])
        XCTAssertEqual(fit.slope, 0.5, accuracy: 1e-12)
        XCTAssertEqual(fit.intercept, 0.5, accuracy: 1e-12)
        XCTAssertEqual(fit.rSquared ?? -1, 0.25, accuracy: 1e-12)
        // Every y the same: the fit is flat and R² undefined (nil), not 1 or NaN.
        let flat = try Analysis.fit(flops: [1, 10, 100], values: [5, 5, 5])
        XCTAssertEqual(flat.slope, 0, accuracy: 1e-12)
        XCTAssertNil(flat.rSquared)
    }

    /// A: y = 10·C^−0.2, B: y = 20·C^−0.1. At C* = 1e14, y* = 10·(1e14)^−0.2 and B reaches it at
    /// C_B = (20 / y*)^(1/0.1), computed here without the log-space formula the code uses.
    func testParityRatioOfTwoKnownPowerLaws() throws {
        let a = try Analysis.fit(flops: budgets, values: budgets.map { 10 * pow($0, -0.2) })
        let b = try Analysis.fit(flops: budgets, values: budgets.map { 20 * pow($0, -0.1) })
        let reference = 1e14, level = 10 * pow(reference, -0.2)
        let expected = pow(20 / level, 1 / 0.1) / reference  // = 2^10 · 10^18 · 10^10 / 10^14 ≈ 1.02e17
        guard case .ratio(let ratio, let extrapolated) = Analysis.parity(reference: a, other: b, atFlops: reference) else {
            return XCTFail("no ratio for two falling power laws")
        }
        XCTAssertEqual(ratio / expected, 1, accuracy: 1e-9, "ratio \(ratio), closed form \(expected)")
        XCTAssertTrue(extrapolated, "C_B = \(ratio * reference) lies far beyond B's largest budget 1e15")
        // The other way round: A reaches B's level with less compute (ratio below 1), inside A's budgets.
        let levelB = 20 * pow(reference, -0.1), expectedBack = pow(10 / levelB, 1 / 0.2) / reference
        guard case .ratio(let back, let backExtrapolated) = Analysis.parity(reference: b, other: a, atFlops: reference) else { return XCTFail("no ratio") }
        XCTAssertEqual(back / expectedBack, 1, accuracy: 1e-9)
        XCTAssertLessThan(back, 1)
        XCTAssertEqual(backExtrapolated, expectedBack * reference < 1e12)

        // Parallel fits (C: 40·C^−0.2, four times A): the same ratio at every level, 4^(1/0.2) = 1024.
        let c = try Analysis.fit(flops: budgets, values: budgets.map { 40 * pow($0, -0.2) })
        for level in [1e12, 1e13, 1e15] {
            XCTAssertEqual(Analysis.parity(reference: a, other: c, atFlops: level).ratio ?? 0, pow(4, 1 / 0.2), accuracy: 1e-6)
        }
        // A fit that does not fall with compute never reaches the level: no ratio, and a message saying so.
        let rising = try Analysis.fit(flops: budgets, values: budgets.map { 1e-3 * pow($0, 0.05) })
        guard case .noCrossing(let why) = Analysis.parity(reference: a, other: rising, atFlops: reference) else { return XCTFail("a rising fit crossed") }
        XCTAssert(why.contains("no crossing") && why.contains("slope"), why)
        let flat = try Analysis.fit(flops: budgets, values: budgets.map { _ in 2 })
        XCTAssertNil(Analysis.parity(reference: a, other: flat, atFlops: reference).ratio)
    }

    /// Quantiles by linear interpolation between order statistics (Hyndman & Fan's definition 7, R's and
    /// numpy's default): for 1…5 the 25 % quantile sits at position 1 (value 2) and the 75 % at 3 (value 4);
    /// for 0 and 10 the 2.5 % one is 0.25 and the 97.5 % one 9.75.
    func testBootstrapPercentileIntervalsOfKnownValues() {
        XCTAssertEqual(BootstrapInterval.percentile([5, 1, 4, 2, 3], level: 0.5), .init(low: 2, high: 4))
        let wide = BootstrapInterval.percentile([10, 0])!
        XCTAssertEqual(wide.low, 0.25, accuracy: 1e-12)
        XCTAssertEqual(wide.high, 9.75, accuracy: 1e-12)
        XCTAssertNil(BootstrapInterval.percentile([1]))
    }

    /// Every slope and parity ratio carries a 95 % bootstrap interval over runs. Points exactly on a power
    /// law: every resample refits the same line, so the intervals shrink to the estimates. Noisy points: the
    /// slope's interval holds the estimate and has width, the ratio's too, and a second analysis gives the
    /// same bits (one fixed stream per fit). Both reach the markdown and the HDF5.
    func testSlopesAndParityRatiosCarryBootstrapIntervals() throws {
        func analysis(noise: Double) -> Analysis.Analysis {
            var observations: [Analysis.Observation] = []
            for (i, c) in budgets.enumerated() {
                let wobble = pow(10, noise * [0.3, -0.5, 0.4, -0.2, 0.1][i])
                observations.append(observation("chameleon", seed: 0, flops: c, ["fd_fmnist": 10 * pow(c, -0.2) * wobble]))
                observations.append(observation("showo", seed: 0, flops: c, ["fd_fmnist": 40 * pow(c, -0.2) / wobble]))
            }
            return Analysis.analyze(observations, source: "synthetic")
        }
        let exact = analysis(noise: 0)
        for fit in exact.fits {
            XCTAssertGreaterThan(fit.bootstrap.count, BootstrapInterval.resamples * 9 / 10, "most resamples of five budgets have two distinct ones")
            let interval = try XCTUnwrap(fit.slopeInterval)
            XCTAssertEqual(interval.low, -0.2, accuracy: 1e-9)
            XCTAssertEqual(interval.high, -0.2, accuracy: 1e-9)
        }
        let exactParity = try XCTUnwrap(exact.parities.first { $0.parity.reference == "chameleon" })
        XCTAssertEqual(exactParity.bootstrap.interval?.low ?? 0, 1024, accuracy: 1e-3)  // 4^(1/0.2), parallel fits
        XCTAssertEqual(exactParity.bootstrap.interval?.high ?? 0, 1024, accuracy: 1e-3)
        XCTAssertEqual(exactParity.bootstrap.noCrossing, 0)

        let noisy = analysis(noise: 0.1)
        let fit = try XCTUnwrap(noisy.fits.first { $0.recipe == "chameleon" })
        let slope = try XCTUnwrap(fit.slopeInterval)
        XCTAssertTrue(slope.contains(fit.fit.slope), "\(slope) against \(fit.fit.slope)")
        XCTAssertGreaterThan(slope.high - slope.low, 1e-3)
        let parity = try XCTUnwrap(noisy.parities.first { $0.parity.reference == "chameleon" })
        let ratio = try XCTUnwrap(parity.bootstrap.interval), estimate = try XCTUnwrap(parity.parity.outcome.ratio)
        XCTAssertTrue(ratio.contains(estimate) && ratio.high > ratio.low * 1.01, "\(ratio) against \(estimate)")
        let again = analysis(noise: 0.1)
        XCTAssertEqual(again.fits.map(\.slopeInterval), noisy.fits.map(\.slopeInterval))

        let markdown = Analysis.markdown(noisy, commit: "test")
        XCTAssert(markdown.contains(String(format: "%.4f … %.4f", slope.low, slope.high)), markdown)
        XCTAssert(markdown.contains("\(Analysis.number(ratio.low)) … \(Analysis.number(ratio.high))"), markdown)
        let directory = try temporaryDirectory()
        try Analysis.writeHDF5(noisy, to: directory + "/analysis.h5")
        let file = try HDF5File.open(directory + "/analysis.h5")
        defer { try? file.close() }
        XCTAssertEqual(try file.root.group("fits/fd_fmnist/chameleon").doubleAttribute("slope_low"), slope.low)
        XCTAssertEqual(try file.root.group("parity/fd_fmnist/chameleon_vs_showo").doubleAttribute("ratio_high"), ratio.high)
    }

    func observation(_ recipe: String, seed: Int64, flops: Double, _ metrics: [String: Double]) -> Analysis.Observation {
        Analysis.Observation(run: "\(recipe)-\(seed)-" + String(format: "%.0e", flops), recipe: recipe, seed: seed, nonEmbeddingParameters: Int64(flops / 1e6),
                             flops: flops, metrics: metrics)
    }

    /// Two seeds with exact power laws of slopes −0.2 and −0.3 (and intercepts 1 and 2): per-seed fits give
    /// mean −0.25 and sample standard deviation √(2·0.05²/1) = 0.0707…; the pooled fit sees both seeds.
    func testSeedSpreadOfTheCoefficients() throws {
        var observations: [Analysis.Observation] = []
        for (seed, slope, intercept) in [(Int64(0), -0.2, 1.0), (1, -0.3, 2.0)] {
            for c in budgets {
                let fd = pow(10, intercept) * pow(c, slope)
                observations.append(observation("chameleon", seed: seed, flops: c, ["fd_fmnist": fd, "t2i_accuracy": 1 - fd / 1e3]))
            }
        }
        let result = Analysis.analyze(observations, source: "synthetic")
        let fit = try XCTUnwrap(result.fits.first { $0.metric == "fd_fmnist" })
        XCTAssertEqual(fit.fit.count, 10)
        XCTAssertEqual(fit.seedFits.map(\.seed), [0, 1])
        let (mean, deviation) = Analysis.meanAndDeviation(fit.seedFits.map(\.fit.slope))
        XCTAssertEqual(mean, -0.25, accuracy: 1e-12)
        XCTAssertEqual(deviation ?? 0, (2 * 0.05 * 0.05).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(Analysis.meanAndDeviation(fit.seedFits.map(\.fit.intercept)).mean, 1.5, accuracy: 1e-9)
        // Accuracies are fitted as their error: 1 − (1 − fd/1e3) = fd/1e3, so the same slopes come back.
        let accuracy = try XCTUnwrap(result.fits.first { $0.metric == "t2i_accuracy" })
        XCTAssertEqual(accuracy.seedFits[0].fit.slope, -0.2, accuracy: 1e-9)
        XCTAssertEqual(accuracy.seedFits[0].fit.intercept, 1 - 3, accuracy: 1e-9)
        let markdown = Analysis.markdown(result, commit: "test")
        XCTAssert(markdown.contains("| fd_fmnist | fd_fmnist | chameleon | 10 | "), markdown)
        XCTAssert(markdown.contains("-0.25 ± 0.07071 (2 seeds)"), markdown)
        XCTAssert(markdown.contains("| t2i_accuracy | 1 − t2i_accuracy | chameleon |"), markdown)
    }

    func testDegenerateInputsAreRefusedOrLeftOutWithANote() throws {
        XCTAssertThrowsError(try Analysis.fit(flops: [1e12], values: [3])) { XCTAssert("\($0)".contains("two or more budgets"), "\($0)") }
        XCTAssertThrowsError(try Analysis.fit(flops: [1e12, 1e12], values: [3, 4])) { XCTAssert("\($0)".contains("two or more budgets"), "\($0)") }
        XCTAssertThrowsError(try Analysis.fit(flops: [1e12, 1e13], values: [3, 0])) { XCTAssert("\($0)".contains("positive"), "\($0)") }
        XCTAssertThrowsError(try Analysis.fit(flops: [1e12, 1e13], values: [-1, 2])) { XCTAssert("\($0)".contains("positive"), "\($0)") }

        let observations = [
            observation("showo", seed: 0, flops: 1e12, ["fd_fmnist": 80, "t2i_accuracy": 0.5, "text_ppl": 60]),
            observation("showo", seed: 0, flops: 1e13, ["fd_fmnist": 40, "t2i_accuracy": 1.0, "text_ppl": 50]),
            observation("showo", seed: 0, flops: 1e14, ["fd_fmnist": 20, "t2i_accuracy": 0.9, "text_ppl": -1]),
            observation("transfusion", seed: 0, flops: 1e13, ["fd_fmnist": 70]),
        ]
        let result = Analysis.analyze(observations, source: "synthetic")
        // A perfect accuracy (error 0) and a negative perplexity are left out, with a note naming the run.
        XCTAssertEqual(result.fits.first { $0.metric == "t2i_accuracy" }?.fit.count, 2)
        XCTAssertEqual(result.fits.first { $0.metric == "text_ppl" }?.fit.count, 2)
        XCTAssert(result.notes.contains { $0.contains("showo-0-1e+13") && $0.contains("t2i_accuracy") && $0.contains("1 − accuracy") }, "\(result.notes)")
        XCTAssert(result.notes.contains { $0.contains("showo-0-1e+14") && $0.contains("text_ppl") && $0.contains("not positive") }, "\(result.notes)")
        // One Transfusion run: no fit, a note, and no parity row with it.
        XCTAssertNil(result.fits.first { $0.recipe == "transfusion" })
        XCTAssert(result.notes.contains { $0.contains("fd_fmnist, transfusion: no fit") && $0.contains("two or more budgets") }, "\(result.notes)")
        XCTAssertTrue(result.parities.isEmpty)
        XCTAssert(Analysis.markdown(result, commit: "x").contains("no two recipes with fits"))
        XCTAssertEqual(result.fits.first { $0.metric == "fd_fmnist" }?.fit.slope ?? 0, log10(0.5), accuracy: 1e-12)
    }

    /// The root attributes every results file carries (ResultsSchema checks them).
    func stampResultsFile(_ root: HDF5Group) throws {
        try root.setAttribute("schema_version", ResultsSchema.version)
        for name in ["created", "git_commit", "machine", "versions"] { try root.setAttribute(name, "synthetic") }
    }

    /// The attributes every run group carries.
    func stampRun(_ run: HDF5Group, recipe: String, seed: Int64 = 0) throws {
        try run.setAttribute("recipe", recipe)
        try run.setAttribute("config", "synthetic")
        try run.setAttribute("seed", seed)
    }

    /// Three recipes at four budgets (1e12 … 6.4e13), two seeds each, with exact power laws: fd_fmnist
    /// (seed-dependent factor 1.02 / 0.98), text_ppl, a flat t2i_accuracy of 0.5 and caption error 1e2·C^−0.2;
    /// each run with an earlier evaluation that must be ignored.
    func writeSyntheticResults(to path: String, flopsFactor: Double = 1) throws {
        let laws: [String: (fd: (Double, Double), ppl: (Double, Double))] = [
            "chameleon": ((1e4, -0.3), (900, -0.15)), "showo": ((3e4, -0.35), (800, -0.14)), "transfusion": ((2e3, -0.25), (1000, -0.16)),
        ]
        let results = try HDF5File.create(path)
        try stampResultsFile(results.root)
        try results.root.setAttribute("git_commit", "abc")
        for (recipe, law) in laws {
            for (index, c) in [1e12, 4e12, 1.6e13, 6.4e13].enumerated() {
                for seed in [Int64(0), 1] {
                    let run = try results.root.createGroup("runs/scaling-\(index)-\(recipe)-\(seed)")
                    try run.setAttribute("recipe", recipe)
                    try run.setAttribute("config", "synthetic")
                    try run.setAttribute("seed", seed)
                    try run.setAttribute("non_embedding_parameter_count", Int64(index + 1) * 100_000)
                    let wobble = seed == 0 ? 1.02 : 0.98  // seed noise, so the spread is not zero
                    // Two evaluations: the analysis must take the last one.
                    try run.createDataset("eval/step", values: [Int64(50), 100], shape: [2])
                    try run.createDataset("eval/flops_counted", values: [c / 2 * flopsFactor, c * flopsFactor], shape: [2])
                    try run.createDataset("eval/fd_fmnist", values: [1e9, law.fd.0 * pow(c, law.fd.1) * wobble], shape: [2])
                    try run.createDataset("eval/text_ppl", values: [1e9, law.ppl.0 * pow(c, law.ppl.1)], shape: [2])
                    try run.createDataset("eval/t2i_accuracy", values: [0, 0.5], shape: [2])
                    try run.createDataset("eval/caption_accuracy", values: [0, 1 - 1e2 * pow(c, -0.2)], shape: [2])
                }
            }
        }
        try results.close()
    }

    /// A results file in the layout of DESIGN.md: three recipes at four budgets, two seeds each, with
    /// exact power laws; `fusion analyze`'s code writes analysis.md and analysis.h5 and leaves the results alone.
    func testAnalysisOfAResultsFileWritesMarkdownAndHDF5() throws {
        let directory = NSTemporaryDirectory() + "fusion-analysis-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/results.h5"
        try writeSyntheticResults(to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let (result, markdown) = try Analysis.run(results: path, to: directory + "/analysis")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before, "the results file was modified")
        XCTAssertEqual(result.observations.count, 24)
        let ppl = try XCTUnwrap(result.fits.first { $0.metric == "text_ppl" && $0.recipe == "showo" })
        XCTAssertEqual(ppl.fit.slope, -0.14, accuracy: 1e-12)
        XCTAssertEqual(ppl.fit.intercept, log10(800), accuracy: 1e-10)
        XCTAssertEqual(ppl.seedFits.count, 2)
        let caption = try XCTUnwrap(result.fits.first { $0.metric == "caption_accuracy" && $0.recipe == "chameleon" })
        XCTAssertEqual(caption.fit.slope, -0.2, accuracy: 1e-9, "accuracies are fitted as 1 − accuracy")
        // A flat accuracy (0.5 for every run) fits with slope 0: as the other recipe of a pair it has no crossing.
        let flat = try XCTUnwrap(result.parities.first { $0.metric == "t2i_accuracy" && $0.parity.other == "showo" })
        XCTAssertNil(flat.parity.outcome.ratio)
        // Parity of Transfusion against Chameleon on text_ppl at C* = 6.4e13, by the closed form.
        let p = try XCTUnwrap(result.parities.first { $0.metric == "text_ppl" && $0.parity.reference == "chameleon" && $0.parity.other == "transfusion" })
        let level = 900 * pow(6.4e13, -0.15)
        XCTAssertEqual(p.parity.referenceFlops, 6.4e13)
        XCTAssertEqual(p.parity.referenceLevel, level, accuracy: level * 1e-9)
        XCTAssertEqual((p.parity.outcome.ratio ?? 0) / (pow(1000 / level, 1 / 0.16) / 6.4e13), 1, accuracy: 1e-9)
        XCTAssertEqual(p.seedRatios.count, 2)
        XCTAssert(markdown.contains("## FLOP parity") && markdown.contains("| text_ppl | chameleon | transfusion | 6.400e+13 |"), markdown)

        // analysis.h5 holds the same coefficients, readable back.
        let file = try HDF5File.open(directory + "/analysis/analysis.h5")
        let group = try file.root.group("fits/text_ppl/showo")
        XCTAssertEqual(try group.doubleAttribute("slope"), ppl.fit.slope)
        XCTAssertEqual(try group.stringAttribute("fitted"), "text_ppl")
        XCTAssertEqual(try group.dataset("flops").read(as: Double.self).count, 8)
        XCTAssertEqual(try group.dataset("seed_fits/slope").read(as: Double.self).count, 2)
        XCTAssertEqual(try file.root.group("fits/caption_accuracy/chameleon").stringAttribute("fitted"), "1 − caption_accuracy")
        let parity = try file.root.group("parity/text_ppl/chameleon_vs_transfusion")
        XCTAssertEqual(try parity.doubleAttribute("ratio"), p.parity.outcome.ratio)
        XCTAssertEqual(try parity.doubleArrayAttribute("seed_ratios").count, 2)
        XCTAssertTrue(try file.root.group("parity/t2i_accuracy/chameleon_vs_showo").doubleAttribute("ratio").isNaN)
    }

    func testAResultsFileWithOneRunPerRecipeIsRefusedSayingWhy() throws {
        let directory = NSTemporaryDirectory() + "fusion-analysis-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let results = try HDF5File.create(directory + "/results.h5")
        try stampResultsFile(results.root)
        for recipe in ["chameleon", "showo"] {
            let run = try results.root.createGroup("runs/q-\(recipe)")
            try stampRun(run, recipe: recipe)
            try run.createDataset("eval/step", values: [Int64(100)], shape: [1])
            try run.createDataset("eval/flops_counted", values: [1e13], shape: [1])
            try run.createDataset("eval/fd_fmnist", values: [50.0], shape: [1])
        }
        try stampRun(try results.root.createGroup("runs/unevaluated"), recipe: "showo")
        try results.close()
        XCTAssertThrowsError(try Analysis.run(results: directory + "/results.h5", to: directory + "/analysis")) {
            XCTAssert("\($0)".contains("two or more FLOP budgets") && "\($0)".contains("analysis.md"), "\($0)")
        }
        let notes = try String(contentsOfFile: directory + "/analysis/analysis.md", encoding: .utf8)
        XCTAssert(notes.contains("unevaluated: skipped") && notes.contains("fd_fmnist, chameleon: no fit"), notes)
        XCTAssertThrowsError(try Analysis.run(results: directory + "/nothing.h5", to: directory + "/analysis")) {
            XCTAssert("\($0)".contains("nothing.h5"), "\($0)")
        }
    }

    /// The command as a user runs it: `fusion analyze` prints the tables and names its files; a file it
    /// cannot fit ends with status 1 and a message saying why; `fusion sweep --dry-run` lists the scaling runs.
    /// Two results files analysed together, labelled by their directories: every recipe of each is fitted
    /// apart, and a file whose runs needed twice the FLOPs for the same values trails by a parity ratio of 2.
    func testSeveralResultsFilesAreComparedUnderTheirLabels() throws {
        let directory = try temporaryDirectory()
        for (label, factor) in [("eps", 1.0), ("flow", 2.0)] {
            try FileManager.default.createDirectory(atPath: "\(directory)/\(label)", withIntermediateDirectories: true)
            try writeSyntheticResults(to: "\(directory)/\(label)/results.h5", flopsFactor: factor)
        }
        let files = ["\(directory)/eps/results.h5", "\(directory)/flow/results.h5"]
        let (result, markdown) = try Analysis.run(results: files, labels: nil, to: directory + "/analysis")
        XCTAssertEqual(result.observations.count, 48)
        XCTAssertTrue(result.observations.contains { $0.run == "flow/scaling-0-showo-1" && $0.recipe == "showo-flow" })
        let p = try XCTUnwrap(result.parities.first { $0.metric == "text_ppl" && $0.parity.reference == "chameleon-eps" && $0.parity.other == "chameleon-flow" })
        XCTAssertEqual(p.parity.outcome.ratio ?? 0, 2, accuracy: 1e-9)
        XCTAssertTrue(markdown.contains("eps/results.h5 (eps), ") && markdown.contains("flow/results.h5 (flow)"), markdown)

        let command = try FusionBinary.run(["analyze"] + files + ["--labels", "a,b", "--out", directory + "/cli"])
        XCTAssertEqual(command.status, 0, command.output)
        XCTAssertTrue(try String(contentsOfFile: directory + "/cli/analysis.md", encoding: .utf8).contains("| text_ppl | chameleon-a | chameleon-b |"))
        for (labels, expected) in [("a", "1 label(s) for 2"), ("a,a", "not all different"), ("a,b c", "letters, digits")] {
            let refused = try FusionBinary.run(["analyze"] + files + ["--labels", labels, "--out", directory + "/x"])
            XCTAssertEqual(refused.status, 1)
            XCTAssertTrue(refused.output.contains(expected), refused.output)
        }
        XCTAssertThrowsError(try Analysis.run(results: [files[0], files[0]], labels: nil, to: directory + "/y")) {
            XCTAssertTrue("\($0)".contains("give --labels"), "\($0)")
        }
    }

    /// Runs measured with a reference classifier of other images (fd_NAME) get that distance fitted too,
    /// beside the standard metrics; its N and spread are not fitted.
    func testTheDistancesOfOtherReferenceClassifiersAreFitted() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/results.h5"
        try writeSyntheticResults(to: path)
        let file = try HDF5File.open(path, writable: true)
        let runs = try file.root.group("runs")
        for name in try runs.childNames {
            let eval = try runs.group(name + "/eval")
            let flops = try eval.dataset("flops_counted").read(as: Double.self)
            try eval.createDataset("fd_pets", values: flops.map { 5e3 * pow($0, -0.3) }, shape: [flops.count])
            try eval.createDataset("fd_pets_n", values: [8.0, 8], shape: [2])
        }
        try file.close()
        let (result, markdown) = try Analysis.run(results: path, to: directory + "/analysis")
        let pets = try XCTUnwrap(result.fits.first { $0.metric == "fd_pets" && $0.recipe == "showo" })
        XCTAssertEqual(pets.fit.slope, -0.3, accuracy: 1e-9)
        XCTAssertFalse(result.fits.contains { $0.metric == "fd_pets_n" })
        XCTAssertTrue(markdown.contains("| fd_pets | fd_pets | showo |"), markdown)
    }

    func testTheAnalyzeCommand() throws {
        let directory = NSTemporaryDirectory() + "fusion-analysis-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try writeSyntheticResults(to: directory + "/results.h5")
        let analyzed = try FusionBinary.run(["analyze", directory + "/results.h5", "--out", directory + "/out"])
        XCTAssertEqual(analyzed.status, 0, analyzed.output)
        XCTAssert(analyzed.output.contains("## Fits") && analyzed.output.contains("## FLOP parity")
                  && analyzed.output.contains(directory + "/out/analysis.h5"), analyzed.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/out/analysis.md"))
        // Default output directory: analysis/ beside the results.
        XCTAssertEqual(try FusionBinary.run(["analyze", directory + "/results.h5"]).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/analysis/analysis.h5"))
        let missing = try FusionBinary.run(["analyze", directory + "/missing.h5"])
        XCTAssertEqual(missing.status, 1)
        XCTAssert(missing.output.contains("fusion: ") && missing.output.contains("missing.h5"), missing.output)
        let plan = try FusionBinary.run(["sweep", "configs/scaling.yaml", "--dry-run"])
        XCTAssertEqual(plan.status, 0, plan.output)
        XCTAssert(plan.output.contains("15 run(s)") && plan.output.contains("scaling-xl-transfusion-0 | transfusion | 0 |"), plan.output)
    }
}

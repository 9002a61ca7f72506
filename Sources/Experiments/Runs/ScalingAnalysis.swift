// `fusion analyze`: compute-scaling laws of the three recipes from a sweep's results (issue 8; the
// method of Transfusion, arXiv 2408.11039, §4.2 and Fig. 5, and Chameleon-vs-Transfusion "FLOP parity").
//
// For every metric and recipe, an ordinary least-squares fit over runs (the final evaluation of each) of
//     log10 y = intercept + slope · log10 C
// where C = training FLOPs counted by the operations (eval/flops_counted at that evaluation) and
// y = the metric for fd_fmnist and text_ppl, and y = 1 − accuracy (the error) for t2i_accuracy and
// caption_accuracy, so that a lower y is better for every fit and a power law has slope < 0.
// Where a recipe was run with several seeds, the fit is also made per seed, and the spread of the
// per-seed slopes and intercepts (mean ± sample standard deviation) is reported. Every slope and every
// parity ratio also carries a 95 % interval from the bootstrap over runs (BootstrapInterval.swift).
//
// FLOP parity between recipes A and B (fits a_A + b_A·x and a_B + b_B·x, x = log10 C): take the
// reference budget C* = the largest budget both were trained at, min(max C_A, max C_B), and A's fitted
// level there, y* = a_A + b_A·log10 C*. B's fit reaches y* at log10 C_B = (y* − a_B) / b_B, so
//     ratio B/A = C_B / C* = 10^((a_A − a_B + (b_A − b_B)·log10 C*) / b_B)
// (> 1: B needs more compute than A for A's level). It exists only where B's fit falls with compute
// (b_B < 0); parallel fits (b_A = b_B) give the same ratio at every level, diverging ones a ratio that
// changes with the level, which is why the reference level is stated with every ratio.
//
// Writes DIR/analysis.md (the tables, with notes on every run or fit left out and why) and
// DIR/analysis.h5 (the points and coefficients); it never writes into the results file it reads.
import Foundation
import Fusion

enum ScalingAnalysis {
    /// The metrics fitted, and whether each is an accuracy (fitted as its error 1 − accuracy).
    static let metrics: [(name: String, isAccuracy: Bool)] = [
        ("fd_fmnist", false), ("fd_fmnist_best_guidance", false), ("t2i_accuracy", true), ("caption_accuracy", true), ("text_ppl", false),
    ]
    static let recipeOrder = ["chameleon", "showo", "transfusion"]

    /// The metrics fitted for these observations: the standard ones, then the Fréchet distance of any
    /// other reference classifier the runs were measured with (fd_NAME: data.reference), in name order.
    static func metrics(of observations: [Observation]) -> [(name: String, isAccuracy: Bool)] {
        let standard = Set(metrics.map(\.name))
        let others = Set(observations.flatMap(\.metrics.keys)).filter { !standard.contains($0) && $0.hasPrefix("fd_") }.sorted()
        return metrics + others.map { ($0, false) }
    }

    /// What a fit of `metric` is a fit of, in words (for tables and the HDF5 attributes).
    static func fittedQuantity(_ metric: String) -> String {
        metrics.first { $0.name == metric }?.isAccuracy == true ? "1 − \(metric)" : metric
    }

    /// The final evaluation of one run.
    struct Observation: Equatable {
        let run: String
        let recipe: String
        let seed: Int64
        let nonEmbeddingParameters: Int64
        /// Training FLOPs counted up to the final evaluation.
        let flops: Double
        /// Final value of each metric the run logged.
        let metrics: [String: Double]
    }

    struct FitError: Error, CustomStringConvertible { let description: String }

    /// log10 y = intercept + slope · log10 C, fitted by ordinary least squares.
    struct PowerLawFit: Equatable {
        let slope: Double
        let intercept: Double
        /// 1 − SS_res / SS_tot; nil when every y is the same (SS_tot = 0). With two points it is 1 by construction.
        let rSquared: Double?
        let count: Int
        /// Smallest and largest C fitted.
        let flopsRange: ClosedRange<Double>

        /// The fitted log10 y at log10 C = x.
        func level(atLog10Flops x: Double) -> Double { intercept + slope * x }
    }

    /// OLS of log10 `values` on log10 `flops`. Throws (saying what is wrong) when a value or a budget is
    /// not positive and finite, or when fewer than two different budgets are given.
    static func fit(flops: [Double], values: [Double]) throws -> PowerLawFit {
        guard flops.count == values.count else { throw FitError(description: "\(flops.count) budgets but \(values.count) values") }
        for (c, y) in zip(flops, values) {
            guard c.isFinite, c > 0 else { throw FitError(description: "a FLOPs budget of \(c): budgets must be positive and finite") }
            guard y.isFinite, y > 0 else {
                throw FitError(description: "a value of \(y) at \(String(format: "%.3e", c)) FLOPs: a power law needs positive, finite values")
            }
        }
        let x = flops.map(log10), y = values.map(log10)
        let n = Double(x.count)
        let meanX = x.reduce(0, +) / n, meanY = y.reduce(0, +) / n
        let sxx = x.reduce(0) { $0 + ($1 - meanX) * ($1 - meanX) }
        // Budgets that differ by less than 1e-9 decades cannot fix a slope.
        guard x.count >= 2, sxx > 1e-18 * n else {
            throw FitError(description: "\(x.count) run(s) at \(Set(flops).count) different FLOPs budget(s): a fit needs runs at two or more budgets")
        }
        let sxy = zip(x, y).reduce(0) { $0 + ($1.0 - meanX) * ($1.1 - meanY) }
        let slope = sxy / sxx, intercept = meanY - slope * meanX
        let ssTotal = y.reduce(0) { $0 + ($1 - meanY) * ($1 - meanY) }
        let ssResidual = zip(x, y).reduce(0) { $0 + pow($1.1 - (intercept + slope * $1.0), 2) }
        return PowerLawFit(slope: slope, intercept: intercept, rSquared: ssTotal > 0 ? 1 - ssResidual / ssTotal : nil,
                           count: x.count, flopsRange: flops.min()!...flops.max()!)
    }

    /// Mean and sample standard deviation (n − 1); the deviation is nil for a single value.
    static func meanAndDeviation(_ values: [Double]) -> (mean: Double, deviation: Double?) {
        let mean = values.reduce(0, +) / Double(values.count)
        guard values.count >= 2 else { return (mean, nil) }
        return (mean, (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)).squareRoot())
    }

    /// The compute B needs for A's level, relative to A's (see the formula at the top of the file).
    enum ParityOutcome: Equatable {
        /// C_B / C*; `extrapolated` when C_B lies outside the budgets B was trained at.
        case ratio(Double, extrapolated: Bool)
        /// B's fit never reaches the level (why, in words).
        case noCrossing(String)

        var ratio: Double? { if case .ratio(let r, _) = self { return r } else { return nil } }
    }

    struct Parity {
        let reference: String, other: String
        let referenceFlops: Double
        /// A's fitted y* (in the metric's units: the metric, or its error) at C*.
        let referenceLevel: Double
        let outcome: ParityOutcome
    }

    static func parity(reference a: PowerLawFit, other b: PowerLawFit, atFlops referenceFlops: Double) -> ParityOutcome {
        let x = log10(referenceFlops)
        guard b.slope < -1e-12 else {
            return .noCrossing(String(format: "no crossing: B's fit does not fall with compute (slope %.3g ≥ 0)", b.slope))
        }
        let log10Ratio = (a.intercept - b.intercept + (a.slope - b.slope) * x) / b.slope
        guard log10Ratio < 300 else { return .noCrossing("∞: B's fit reaches A's level only beyond 10^300 × C*") }
        let flopsNeeded = x + log10Ratio
        let extrapolated = flopsNeeded < log10(b.flopsRange.lowerBound) - 1e-9 || flopsNeeded > log10(b.flopsRange.upperBound) + 1e-9
        return .ratio(pow(10, log10Ratio), extrapolated: extrapolated)
    }

    // MARK: The analysis of a results file

    struct MetricFit {
        let metric: String, recipe: String
        let fit: PowerLawFit
        let points: [Observation]
        /// Per-seed fits (only where two or more seeds each give a fit).
        let seedFits: [(seed: Int64, fit: PowerLawFit)]
        /// Fits of bootstrap resamples of the points (BootstrapInterval), in draw order.
        var bootstrap: [PowerLawFit] = []

        var slopeInterval: BootstrapInterval.Interval? { BootstrapInterval.percentile(bootstrap.map(\.slope)) }
    }

    /// The 95 % bootstrap interval of a parity ratio: the i-th resample of A's fit against the i-th of B's
    /// (drawn independently), at the same C*; with the resamples in which B's fit does not reach A's level.
    struct ParityInterval {
        let interval: BootstrapInterval.Interval?
        let noCrossing: Int, resamples: Int
    }

    struct Analysis {
        let source: String
        let observations: [Observation]
        let fits: [MetricFit]
        /// Per metric, every ordered pair of recipes with fits; with the per-seed ratios where seeds allow,
        /// and the ratio's bootstrap interval.
        let parities: [(metric: String, parity: Parity, seedRatios: [Double], bootstrap: ParityInterval)]
        let notes: [String]
    }

    /// Reads the final evaluation of every run in a results file (a sweep's results.h5 or a run's log.h5).
    /// With a `label` (comparing files), each run's recipe becomes RECIPE-LABEL and its name LABEL/NAME, so
    /// the recipes of each file are fitted apart and every pair of them gets a parity ratio.
    static func observations(in path: String, label: String? = nil, notes: inout [String]) throws -> [Observation] {
        let file: HDF5File
        do { file = try HDF5File.open(path) } catch {
            throw RunFailure(description: "\(path): cannot open it as HDF5 (\(error)); pass a sweep's results.h5 or a run's log.h5")
        }
        try ResultsSchema.validate(file)
        let runs = try file.root.group("runs")
        var observations: [Observation] = []
        for name in try runs.childNames {
            let run = try runs.group(name)
            guard let recipe = try? run.stringAttribute("recipe") else { notes.append("\(name): skipped, it has no 'recipe' attribute"); continue }
            guard try run.exists("eval/flops_counted"), let flops = try run.dataset("eval/flops_counted").read(as: Double.self).last else {
                notes.append("\(name): skipped, it has no evaluation (eval/flops_counted)"); continue
            }
            var values: [String: Double] = [:]
            // fd_fmnist is at the shared guidance scale; fd_fmnist_best_guidance at the run's own best (eval_guidance/).
            if let best = try GuidanceCurve(run: run)?.best { values["fd_fmnist_best_guidance"] = best.fd }
            let otherDistances = try run.group("eval").childNames.filter { $0.hasPrefix("fd_") && Report.isReferenceDistance($0) }
            for metric in Set(metrics.map(\.name) + otherDistances) where try run.exists("eval/\(metric)") {
                if let last = try run.dataset("eval/\(metric)").read(as: Double.self).last { values[metric] = last }
            }
            observations.append(Observation(run: label.map { "\($0)/\(name)" } ?? name, recipe: label.map { "\(recipe)-\($0)" } ?? recipe, seed: (try? run.int64Attribute("seed")) ?? 0,
                                            nonEmbeddingParameters: (try? run.int64Attribute("non_embedding_parameter_count")) ?? 0,
                                            flops: flops, metrics: values))
        }
        try file.close()
        guard !observations.isEmpty else {
            throw RunFailure(description: "\(path): no run with an evaluation to analyse" + (notes.isEmpty ? "" : " (\(notes.joined(separator: "; ")))"))
        }
        return observations
    }

    /// The fitted quantity y of an observation for `metric`, or why it cannot be fitted.
    private static func fittedValue(_ observation: Observation, metric: String, isAccuracy: Bool) -> Result<Double, FitError> {
        guard let value = observation.metrics[metric] else { return .failure(FitError(description: "\(observation.run) did not log \(metric)")) }
        let y = isAccuracy ? 1 - value : value
        guard y.isFinite, y > 0 else {
            return .failure(FitError(description: isAccuracy
                ? "\(observation.run): \(metric) = \(value) gives an error 1 − accuracy of \(y), whose logarithm is undefined; left out of the fit"
                : "\(observation.run): \(metric) = \(value) is not positive, its logarithm is undefined; left out of the fit"))
        }
        return .success(y)
    }

    static func analyze(_ observations: [Observation], source: String, notes initialNotes: [String] = []) -> Analysis {
        var notes = initialNotes
        let recipes = Set(observations.map(\.recipe)).sorted { (recipeOrder.firstIndex(of: $0) ?? 99, $0) < (recipeOrder.firstIndex(of: $1) ?? 99, $1) }
        var fits: [MetricFit] = []
        let metrics = metrics(of: observations)
        for (metric, isAccuracy) in metrics {
            for recipe in recipes {
                var points: [(Observation, Double)] = []
                for observation in observations where observation.recipe == recipe {
                    switch fittedValue(observation, metric: metric, isAccuracy: isAccuracy) {
                    case .success(let y): points.append((observation, y))
                    case .failure(let why): if observation.metrics[metric] != nil { notes.append(why.description) }
                    }
                }
                guard !points.isEmpty else { continue }
                let fit: PowerLawFit
                do { fit = try self.fit(flops: points.map(\.0.flops), values: points.map(\.1)) } catch {
                    notes.append("\(metric), \(recipe): no fit: \(error)"); continue
                }
                var seedFits: [(Int64, PowerLawFit)] = []
                let seeds = Set(points.map(\.0.seed)).sorted()
                if seeds.count >= 2 {
                    for seed in seeds {
                        let ofSeed = points.filter { $0.0.seed == seed }
                        do { seedFits.append((seed, try self.fit(flops: ofSeed.map(\.0.flops), values: ofSeed.map(\.1)))) } catch {
                            notes.append("\(metric), \(recipe), seed \(seed): no per-seed fit: \(error)")
                        }
                    }
                    if seedFits.count < 2 { seedFits = [] }
                }
                let stream = RandomGenerator(seed: 0).split(key: "bootstrap/\(metric)/\(recipe)")
                fits.append(MetricFit(metric: metric, recipe: recipe, fit: fit, points: points.map(\.0), seedFits: seedFits,
                                      bootstrap: BootstrapInterval.fits(flops: points.map(\.0.flops), values: points.map(\.1), generator: stream)))
            }
        }
        var parities: [(String, Parity, [Double], ParityInterval)] = []
        for (metric, _) in metrics {
            let ofMetric = fits.filter { $0.metric == metric }
            for a in ofMetric {
                for b in ofMetric where b.recipe != a.recipe {
                    let referenceFlops = min(a.fit.flopsRange.upperBound, b.fit.flopsRange.upperBound)
                    let outcome = parity(reference: a.fit, other: b.fit, atFlops: referenceFlops)
                    var seedRatios: [Double] = []
                    for (seed, fitA) in a.seedFits {
                        if let fitB = b.seedFits.first(where: { $0.seed == seed })?.fit,
                           let ratio = parity(reference: fitA, other: fitB, atFlops: referenceFlops).ratio { seedRatios.append(ratio) }
                    }
                    let resampled = zip(a.bootstrap, b.bootstrap).map { parity(reference: $0.0, other: $0.1, atFlops: referenceFlops).ratio }
                    let ratios = resampled.compactMap { $0 }
                    let bootstrap = ParityInterval(interval: BootstrapInterval.percentile(ratios.map(log10)).map { .init(low: pow(10, $0.low), high: pow(10, $0.high)) },
                                                   noCrossing: resampled.count - ratios.count, resamples: resampled.count)
                    parities.append((metric, Parity(reference: a.recipe, other: b.recipe, referenceFlops: referenceFlops,
                                                    referenceLevel: pow(10, a.fit.level(atLog10Flops: log10(referenceFlops))), outcome: outcome),
                                     seedRatios.count >= 2 ? seedRatios : [], bootstrap))
                }
            }
        }
        return Analysis(source: source, observations: observations, fits: fits, parities: parities, notes: notes)
    }

    // MARK: Output

    static func number(_ value: Double) -> String {
        guard value.isFinite else { return value > 0 ? "∞" : "–" }
        return abs(value) >= 1e4 || (abs(value) < 1e-3 && value != 0) ? String(format: "%.3e", value) : String(format: "%.4g", value)
    }

    private static func spread(_ values: [Double]) -> String {
        guard !values.isEmpty else { return "–" }
        let (mean, deviation) = meanAndDeviation(values)
        return "\(number(mean)) ± \(deviation.map(number) ?? "–") (\(values.count) seeds)"
    }

    static func markdown(_ result: Analysis, commit: String) -> String {
        let metrics = metrics(of: result.observations)
        var lines = ["# Scaling analysis", "",
                     "Results: `\(result.source)` (git \(commit)), \(result.observations.count) run(s).", "",
                     "Each fit is ordinary least squares over runs (the final evaluation of each) of",
                     "`log10 y = intercept + slope · log10 C`, where C is the training FLOPs counted by the operations",
                     "up to that evaluation (`eval/flops_counted`) and y is the metric (fd_fmnist or fd_NAME, text_ppl) or, for the",
                     "accuracies, the error `1 − accuracy`: lower y is better for every fit, and a slope < 0 means the",
                     "recipe improves with compute.", "",
                     "## Runs", "",
                     "| run | recipe | seed | non-embedding parameters | FLOPs counted | " + metrics.map(\.name).joined(separator: " | ") + " |",
                     "|" + Array(repeating: "---", count: 5 + metrics.count).joined(separator: "|") + "|"]
        for o in result.observations {
            lines.append("| \(o.run) | \(o.recipe) | \(o.seed) | \(o.nonEmbeddingParameters) | \(number(o.flops)) | "
                         + metrics.map { o.metrics[$0.name].map(number) ?? "–" }.joined(separator: " | ") + " |")
        }
        lines += ["", "## Fits", "",
                  "| metric | fitted y | recipe | runs | slope | slope, 95 % bootstrap interval | intercept | R² | slope across seeds | intercept across seeds | FLOPs range |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in result.fits {
            let slopeInterval = f.slopeInterval.map { String(format: "%.4f … %.4f", $0.low, $0.high) } ?? "–"
            lines.append("| \(f.metric) | \(fittedQuantity(f.metric)) | \(f.recipe) | \(f.fit.count) | \(String(format: "%.4f", f.fit.slope)) | \(slopeInterval) | "
                         + "\(String(format: "%.4f", f.fit.intercept)) | \(f.fit.rSquared.map { String(format: "%.4f", $0) } ?? "–") | "
                         + "\(spread(f.seedFits.map(\.fit.slope))) | \(spread(f.seedFits.map(\.fit.intercept))) | "
                         + "\(number(f.fit.flopsRange.lowerBound))–\(number(f.fit.flopsRange.upperBound)) |")
        }
        lines += ["", "## FLOP parity", "",
                  "For reference recipe A and other recipe B: C* = min(max C_A, max C_B), the largest budget both were",
                  "trained at; y* = A's fitted y at C*; C_B = the budget at which B's fit reaches y*;",
                  "ratio = C_B / C* = 10^((a_A − a_B + (b_A − b_B)·log10 C*) / b_B), with a the intercepts and b the slopes.",
                  "A ratio above 1 means B needs that many times A's compute to match A; \"extrapolated\" marks a C_B",
                  "outside the budgets B was trained at. With unequal slopes the ratio depends on the level chosen.",
                  "The 95 % interval is the bootstrap over runs (\(BootstrapInterval.resamples) resamples of each fit's runs, at the same C*);",
                  "resamples in which B's fit does not reach A's level are counted, not ranked.", "",
                  "| metric | A (reference) | B | C* | A's level y* | ratio C_B / C* | ratio, 95 % bootstrap interval | ratio across seeds |",
                  "|---|---|---|---|---|---|---|---|"]
        for (metric, p, seedRatios, bootstrap) in result.parities {
            let ratio: String
            switch p.outcome {
            case .ratio(let r, let extrapolated): ratio = number(r) + (extrapolated ? " (extrapolated)" : "")
            case .noCrossing(let why): ratio = why
            }
            var interval = bootstrap.interval.map { "\(number($0.low)) … \(number($0.high))" } ?? "–"
            if bootstrap.noCrossing > 0 { interval += " (no crossing in \(bootstrap.noCrossing) of \(bootstrap.resamples))" }
            lines.append("| \(metric) | \(p.reference) | \(p.other) | \(number(p.referenceFlops)) | \(number(p.referenceLevel)) (\(fittedQuantity(metric))) | "
                         + "\(ratio) | \(interval) | \(spread(seedRatios)) |")
        }
        if result.parities.isEmpty { lines.append("| – | – | – | – | – | no two recipes with fits of the same metric | – | – |") }
        if !result.notes.isEmpty { lines += ["", "## Notes", ""] + result.notes.map { "- \($0)" } }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The points and coefficients as HDF5:
    ///   /                              attributes source, created, git_commit, model ("log10 y = intercept + slope · log10 C")
    ///   /fits/METRIC/RECIPE            attributes fitted ("1 − t2i_accuracy"), slope, slope_low, slope_high (95 % bootstrap; NaN: none),
    ///                                  intercept, r_squared (NaN if undefined), runs (names, one a line);
    ///                                  datasets flops, y, seed (the points fitted); seed_fits/{seed, slope, intercept} where seeds allow
    ///   /parity/METRIC/A_vs_B          attributes reference_flops, reference_level, ratio (NaN: none), extrapolated, outcome (text),
    ///                                  ratio_low, ratio_high (95 % bootstrap; NaN: none), bootstrap_no_crossing, bootstrap_resamples
    static func writeHDF5(_ result: Analysis, to path: String) throws {
        let partial = path + ".partial"
        let file = try HDF5File.create(partial, overwrite: true)
        try file.root.setAttribute("source", result.source)
        try file.root.setAttribute("created", ISO8601DateFormatter().string(from: Date()))
        try file.root.setAttribute("git_commit", Provenance.gitCommit)
        try file.root.setAttribute("model", "log10 y = intercept + slope * log10 C (C: eval/flops_counted; y: the metric, or 1 - accuracy)")
        for f in result.fits {
            let group = try file.root.createGroup("fits/\(f.metric)/\(f.recipe)")
            try group.setAttribute("fitted", fittedQuantity(f.metric))
            try group.setAttribute("slope", f.fit.slope)
            try group.setAttribute("slope_low", f.slopeInterval?.low ?? .nan)
            try group.setAttribute("slope_high", f.slopeInterval?.high ?? .nan)
            try group.setAttribute("intercept", f.fit.intercept)
            try group.setAttribute("r_squared", f.fit.rSquared ?? .nan)
            try group.setAttribute("runs", f.points.map(\.run).joined(separator: "\n"))
            let isAccuracy = metrics.first { $0.name == f.metric }?.isAccuracy ?? false
            try group.createDataset("flops", values: f.points.map(\.flops), shape: [f.points.count])
            try group.createDataset("y", values: f.points.map { isAccuracy ? 1 - $0.metrics[f.metric]! : $0.metrics[f.metric]! }, shape: [f.points.count])
            try group.createDataset("seed", values: f.points.map(\.seed), shape: [f.points.count])
            if !f.seedFits.isEmpty {
                try group.createDataset("seed_fits/seed", values: f.seedFits.map(\.seed), shape: [f.seedFits.count])
                try group.createDataset("seed_fits/slope", values: f.seedFits.map(\.fit.slope), shape: [f.seedFits.count])
                try group.createDataset("seed_fits/intercept", values: f.seedFits.map(\.fit.intercept), shape: [f.seedFits.count])
            }
        }
        for (metric, p, seedRatios, bootstrap) in result.parities {
            let group = try file.root.createGroup("parity/\(metric)/\(p.reference)_vs_\(p.other)")
            try group.setAttribute("ratio_low", bootstrap.interval?.low ?? .nan)
            try group.setAttribute("ratio_high", bootstrap.interval?.high ?? .nan)
            try group.setAttribute("bootstrap_no_crossing", Int64(bootstrap.noCrossing))
            try group.setAttribute("bootstrap_resamples", Int64(bootstrap.resamples))
            try group.setAttribute("reference_flops", p.referenceFlops)
            try group.setAttribute("reference_level", p.referenceLevel)
            switch p.outcome {
            case .ratio(let r, let extrapolated):
                try group.setAttribute("ratio", r)
                try group.setAttribute("extrapolated", extrapolated ? 1 : 0)
                try group.setAttribute("outcome", "ratio")
            case .noCrossing(let why):
                try group.setAttribute("ratio", Double.nan)
                try group.setAttribute("extrapolated", 0)
                try group.setAttribute("outcome", why)
            }
            if !seedRatios.isEmpty { try group.setAttribute("seed_ratios", seedRatios) }
        }
        try file.close()
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: partial, toPath: path)
    }

    /// Reads `results`, writes `directory/analysis.md` and `directory/analysis.h5`, returns the analysis
    /// and its markdown. Throws when no metric of any recipe could be fitted, after writing the notes saying why.
    @discardableResult
    static func run(results: String, to directory: String) throws -> (analysis: Analysis, markdown: String) {
        try run(results: [results], labels: nil, to: directory)
    }

    /// The labels that tell several results files apart in one analysis: `given` (one per file: letters,
    /// digits, - and _, all different), or by default each file's directory name (runs/eps/results.h5:
    /// "eps"). One file needs none.
    static func labels(for results: [String], given: [String]?) throws -> [String]? {
        guard results.count > 1 || given != nil else { return nil }
        let labels = given ?? results.map { ((($0 as NSString).deletingLastPathComponent) as NSString).lastPathComponent }
        guard labels.count == results.count else {
            throw RunFailure(description: "--labels: \(labels.count) label(s) for \(results.count) results file(s); give one per file, in order")
        }
        for label in labels where label.isEmpty || !label.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            throw RunFailure(description: "--labels: '\(label)' must be letters, digits, - and _ (it joins the recipe names: chameleon-\(label))")
        }
        guard Set(labels).count == labels.count else {
            throw RunFailure(description: "the results files' labels \(labels) are not all different"
                             + (given == nil ? " (by default each file's directory names it); give --labels, e.g. --labels eps,flow" : ""))
        }
        return labels
    }

    /// Reads every file of `results` (labelled as `labels(for:given:)` says when there are several) and
    /// analyses their runs together: writes `directory/analysis.md` and `directory/analysis.h5`.
    @discardableResult
    static func run(results: [String], labels given: [String]?, to directory: String) throws -> (analysis: Analysis, markdown: String) {
        precondition(!results.isEmpty, "ScalingAnalysis.run: no results file")
        let labels = try self.labels(for: results, given: given)
        var notes: [String] = [], observations: [Observation] = []
        for (index, path) in results.enumerated() {
            observations += try self.observations(in: path, label: labels?[index], notes: &notes)
        }
        let source = labels.map { zip(results, $0).map { "\($0) (\($1))" }.joined(separator: ", ") } ?? results[0]
        let result = analyze(observations, source: source, notes: notes)
        let commits = results.map { path in (try? HDF5File.open(path)).flatMap { try? $0.root.stringAttribute("git_commit") } ?? "?" }
        let commit = commits.enumerated().filter { !commits[..<$0.offset].contains($0.element) }.map(\.element).joined(separator: ", ")
        let markdown = self.markdown(result, commit: commit)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try markdown.write(toFile: "\(directory)/analysis.md", atomically: true, encoding: .utf8)
        try writeHDF5(result, to: "\(directory)/analysis.h5")
        guard !result.fits.isEmpty else {
            throw RunFailure(description: "\(source): no metric of any recipe could be fitted (notes in \(directory)/analysis.md); "
                             + "a fit needs runs of one recipe at two or more FLOP budgets, e.g. a sweep with size 'points' (configs/scaling.yaml)")
        }
        return (result, markdown)
    }
}

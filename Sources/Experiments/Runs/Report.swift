// `fusion report`: a markdown summary of a results file (one run's log or a sweep's merged file): one
// row per run with its recipe, size, FLOPs and final metrics, and the PNG grid of each run's last
// samples beside it; and the same as one page for a browser, with plots (ReportPage). Reads only what
// the log layout of DESIGN.md promises, so it works on any run, and
// checks the file against that layout (ResultsSchema) before it reads anything.
import Foundation
import Fusion

enum Report {
    static let metricColumns = ["text_ppl", "fd_fmnist", "kid_fmnist", "t2i_accuracy", "caption_accuracy"]

    /// The columns of a report: the standard metrics, then the distances of any other reference
    /// classifier a run was measured with (fd_NAME, kid_NAME) and the understanding scores, in name order.
    static func metricColumns(_ rows: [Row]) -> [String] {
        let others = Set(rows.flatMap(\.metrics.keys)).subtracting(metricColumns).sorted()
        return metricColumns + others
    }

    /// Whether an eval/ series is a reference classifier's distance (fd_NAME, kid_NAME), not its N or spread.
    static func isReferenceDistance(_ name: String) -> Bool {
        (name.hasPrefix("fd_") || name.hasPrefix("kid_")) && !name.hasSuffix("_n") && !name.hasSuffix("_std")
    }

    /// Whether an eval/ series is a column of its own beside the standard ones: a reference distance, or an
    /// understanding score (qa_accuracy, qa_class_accuracy, fewshot_accuracy_kK), not its N.
    static func isExtraColumn(_ name: String) -> Bool {
        isReferenceDistance(name) || ((["qa_accuracy", "qa_class_accuracy"].contains(name) || name.hasPrefix("fewshot_accuracy_k")) && !name.hasSuffix("_n"))
    }

    struct Row {
        let run: String, recipe: String
        let parameters: Int64, nonEmbedding: Int64
        let step: Int64
        let flopsCounted: Double, flops6ND: Double
        let metrics: [String: Double]
        let samplesGrid: String?
        var guidance: GuidanceCurve? = nil
        var seed: Int64? = nil
        /// Seconds in each phase of PhaseTimes, summed over the run's time/ rows (empty for logs without them).
        var seconds: [String: Double] = [:]
    }

    /// Runs that differ only in their seed: those named "SETTING-SEED" (as a sweep's grid over seed names
    /// them) with their own seed, grouped by SETTING where two or more seeds ran, in the rows' order.
    static func seedGroups(_ rows: [Row]) -> [(setting: String, rows: [Row])] {
        var groups: [String: [Row]] = [:], order: [String] = []
        for row in rows {
            guard let seed = row.seed, row.run.hasSuffix("-\(seed)") else { continue }
            let setting = String(row.run.dropLast("-\(seed)".count))
            if groups[setting] == nil { order.append(setting) }
            groups[setting, default: []].append(row)
        }
        return order.compactMap { setting in Set(groups[setting]!.map(\.seed)).count >= 2 ? (setting, groups[setting]!) : nil }
    }

    /// Writes `directory/report.md` and the sample grids; returns the markdown.
    @discardableResult
    static func write(results path: String, to directory: String) throws -> String {
        let file = try ResultsSchema.open(path)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let runs = try file.root.group("runs")
        var rows: [Row] = [], extras: [ReportPage.RunExtras] = []
        for name in try runs.childNames {
            let run = try runs.group(name)
            func last(_ path: String) throws -> Double? {
                guard try run.exists(path) else { return nil }
                return try run.dataset(path).read(as: Double.self).last
            }
            var metrics: [String: Double] = [:]
            let extraColumns = try run.exists("eval") ? try run.group("eval").childNames.filter(isExtraColumn) : []
            for metric in Set(metricColumns + extraColumns) { metrics[metric] = try last("eval/\(metric)") }
            let step = try run.exists("eval/step") ? (try run.dataset("eval/step").read(as: Int64.self).last ?? 0) : 0
            var grid: String? = nil, samples: ReportPage.Samples? = nil
            if try run.exists("samples") {
                let group = try run.group("samples")
                // stepN and maybe stepN_labels, N a positive step (checked by ResultsSchema).
                let steps = try group.childNames.filter { !$0.hasSuffix("_labels") }.compactMap { Int($0.dropFirst("step".count)) }
                if let latest = steps.max().map({ "step\($0)" }) {
                    let bytes = try group.dataset(latest).read(as: UInt8.self)
                    let shape = try group.dataset(latest).shape
                    let images = Tensor(bytes.map { Float($0) / 255 }, shape: shape)
                    let captions = try Self.sampleCaptions(group, latest, count: shape[0])
                    grid = "\(name)-\(latest).png"
                    try PNG.writeGrid(images, columns: 10, scale: 3, labels: captions.count == shape[0] ? captions : [],
                                      to: "\(directory)/\(grid!)", overwrite: true)
                    samples = ReportPage.Samples(bytes: bytes, shape: shape, captions: captions)
                }
            }
            let loss = try run.exists("train/loss") && run.exists("train/step")
                ? Array(zip(try run.dataset("train/step").read(as: Int64.self), try run.dataset("train/loss").read(as: Double.self))) : []
            extras.append(ReportPage.RunExtras(loss: loss, samples: samples))
            rows.append(Row(run: name, recipe: (try? run.stringAttribute("recipe")) ?? "?",
                            parameters: (try? run.int64Attribute("parameter_count")) ?? 0,
                            nonEmbedding: (try? run.int64Attribute("non_embedding_parameter_count")) ?? 0,
                            step: step, flopsCounted: try last("train/flops_counted") ?? 0,
                            flops6ND: try last("train/flops_6nd") ?? 0, metrics: metrics, samplesGrid: grid,
                            guidance: try GuidanceCurve(run: run), seed: try? run.int64Attribute("seed"),
                            seconds: try phaseSeconds(run)))
        }
        let commit = (try? file.root.stringAttribute("git_commit")) ?? "?"
        let markdown = render(rows, source: path, commit: commit)
        try markdown.write(toFile: "\(directory)/report.md", atomically: true, encoding: .utf8)
        try ReportPage.render(rows, extras: extras, source: path, commit: commit)
            .write(toFile: "\(directory)/report.html", atomically: true, encoding: .utf8)
        return markdown
    }

    /// A run's time/ series summed per phase ("training", "eval_sampling", …).
    static func phaseSeconds(_ run: HDF5Group) throws -> [String: Double] {
        guard try run.exists("time") else { return [:] }
        let group = try run.group("time")
        var seconds: [String: Double] = [:]
        for name in try group.childNames where name.hasPrefix("seconds_") {
            seconds[String(name.dropFirst("seconds_".count))] = try group.dataset(name).read(as: Double.self).reduce(0, +)
        }
        return seconds
    }

    /// Where the runs' time went: each run's minutes per phase, and the phases' totals and shares.
    static func timeTable(_ rows: [Row]) -> [String] {
        let timed = rows.filter { !$0.seconds.isEmpty }
        guard !timed.isEmpty else { return [] }
        let phases = PhaseTimes.phases.filter { phase in timed.contains { ($0.seconds[phase] ?? 0) > 0 } }
        func minutes(_ seconds: Double) -> String { String(format: "%.2f", seconds / 60) }
        var lines = ["## Where the time went", "",
                     "Minutes in each phase, summed over each run's time/ rows (data: tokenizer and images through the autoencoder, "
                     + "cached across runs; sampling, decoding, image metrics, understanding and perplexity are the evaluation's parts).", "",
                     "| run | total | " + phases.joined(separator: " | ") + " |",
                     "|" + Array(repeating: "---", count: 2 + phases.count).joined(separator: "|") + "|"]
        var totals: [String: Double] = [:]
        for row in timed {
            for (phase, seconds) in row.seconds { totals[phase, default: 0] += seconds }
            lines.append("| \(row.run) | \(minutes(row.seconds.values.reduce(0, +))) | "
                         + phases.map { minutes(row.seconds[$0] ?? 0) }.joined(separator: " | ") + " |")
        }
        let all = totals.values.reduce(0, +)
        lines.append("| all | \(minutes(all)) | " + phases.map { minutes(totals[$0] ?? 0) }.joined(separator: " | ") + " |")
        lines.append("| share | 100 % | " + phases.map { String(format: "%.1f %%", 100 * (totals[$0] ?? 0) / max(all, 1e-9)) }.joined(separator: " | ") + " |")
        return lines + [""]
    }

    /// What each of the `count` samples stepN was prompted with: the logged prompts, or for logs written
    /// before prompts were, the Fashion-MNIST class of each label.
    static func sampleCaptions(_ group: HDF5Group, _ name: String, count: Int) throws -> [String] {
        let dataset = try group.dataset(name)
        if let prompts = try? dataset.stringAttribute("prompts") {
            let lines = prompts.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.count == count { return lines }
        }
        guard try group.exists(name + "_labels") else { return [] }
        return try group.dataset(name + "_labels").read(as: Int32.self).map { label in
            FashionMNIST.classNames.indices.contains(Int(label)) ? FashionMNIST.classNames[Int(label)] : "class \(label)"
        }
    }

    /// A metric as the report shows it: 4 significant digits, or scientific notation far from 1; "–" for none.
    static func number(_ value: Double?) -> String {
        guard let value else { return "–" }
        return abs(value) >= 1e4 || (abs(value) < 1e-3 && value != 0) ? String(format: "%.3e", value) : String(format: "%.4g", value)
    }

    static func render(_ rows: [Row], source: String, commit: String) -> String {
        let columns = metricColumns(rows)
        var lines = ["# Fusion report", "", "Results: `\(source)` (git \(commit)), \(rows.count) run(s).", "",
                     "| run | recipe | params (non-emb.) | step | FLOPs counted | FLOPs 6ND | " + columns.joined(separator: " | ") + " |",
                     "|" + Array(repeating: "---", count: 6 + columns.count).joined(separator: "|") + "|"]
        for row in rows {
            lines.append("| \(row.run) | \(row.recipe) | \(row.parameters) (\(row.nonEmbedding)) | \(row.step) | "
                         + "\(number(row.flopsCounted)) | \(number(row.flops6ND)) | "
                         + columns.map { number(row.metrics[$0]) }.joined(separator: " | ") + " |")
        }
        let groups = seedGroups(rows)
        if !groups.isEmpty {
            lines += ["", "## Over seeds", "", "Runs that differ only in their seed: the mean of each metric, and in brackets its smallest and largest value.", "",
                      "| setting | seeds | FLOPs counted | " + columns.joined(separator: " | ") + " |",
                      "|" + Array(repeating: "---", count: 3 + columns.count).joined(separator: "|") + "|"]
            for (setting, members) in groups {
                func summary(_ values: [Double]) -> String {
                    guard !values.isEmpty else { return "–" }
                    let mean = values.reduce(0, +) / Double(values.count)
                    return values.count < members.count ? "–" : "\(number(mean)) (\(number(values.min()!))–\(number(values.max()!)))"
                }
                lines.append("| \(setting) | \(members.compactMap(\.seed).map(String.init).joined(separator: ", ")) | "
                             + number(members.map(\.flopsCounted).reduce(0, +) / Double(members.count)) + " | "
                             + columns.map { column in summary(members.compactMap { $0.metrics[column] }) }.joined(separator: " | ") + " |")
            }
        }
        lines += ["", "fd_NAME and kid_NAME are computed on the N images recorded beside them in each log (eval/fd_NAME_n), "
                  + "in the features of the reference classifier the log names (reference_classifier_sha256).", ""]
        let curves = rows.compactMap { row in row.guidance.map { (row.run, $0) } }
        if !curves.isEmpty {
            // Fusion's guidance s in (1 + s)·c − s·u is w = 1 + s in the u + w·(c − u) of the Transfusion and Imagen papers.
            lines += ["## FD and t2i over guidance (last evaluation; s as in (1 + s)·c − s·u, w = 1 + s)", "",
                      "| run | best FD (s) | FD / t2i at each s |", "|---|---|---|"]
            for (run, curve) in curves {
                let best = curve.best.map { "\(number($0.fd)) (\(number($0.scale)))" } ?? "–"
                let all = curve.points.map { "s \(number($0.scale)): \(number($0.fd)) / \(number($0.t2i))" }.joined(separator: "; ")
                lines.append("| \(run) | \(best) | \(all) |")
            }
            lines.append("")
        }
        lines += timeTable(rows)
        for row in rows { if let grid = row.samplesGrid { lines += ["## \(row.run)", "", "![\(row.run) samples](\(grid))", ""] } }
        return lines.joined(separator: "\n")
    }
}

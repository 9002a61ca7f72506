// A run's log in HDF5, in the layout of DESIGN.md ("Results on disk"):
//   /                         attributes: schema_version, created, git_commit, machine, versions
//   /runs/NAME                attributes: config (resolved YAML), seed, recipe, parameter counts, …
//   /runs/NAME/train/*        1-D extendible datasets sharing the `step` axis
//   /runs/NAME/eval/*         the same, appended at each evaluation
//   /runs/NAME/eval_guidance/* the image metrics at each guidance scale: one row per (step, guidance_scale)
//   /runs/NAME/time/*         seconds spent in each phase since the previous row, a row per evaluation (PhaseTimes)
//   /runs/NAME/samples/...    uint8 image arrays
// Flushed after every evaluation, so a run killed at any moment leaves a readable file.
import Foundation
import Fusion

final class RunLog {
    static let schemaVersion: Int64 = 1
    /// The groups of series with a `step` axis: train/, eval/ and time/ one row per logged step;
    /// eval_guidance/ one row per (evaluation step, guidance scale), so its steps repeat.
    static let seriesSections = ["train", "eval", "eval_guidance", "time"]

    let file: HDF5File
    let run: HDF5Group
    private var series: [String: HDF5Dataset] = [:]

    /// Creates the log file with one run group; refuses an existing file unless `overwrite`.
    init(path: String, runName: String, config: String, seed: UInt64, recipe: String,
         attributes: [String: Int64] = [:], strings: [String: String] = [:], overwrite: Bool) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        file = try HDF5File.create(path, overwrite: overwrite)
        FaultInjection.reach("log.created")
        let root = file.root
        try root.setAttribute("schema_version", RunLog.schemaVersion)
        try root.setAttribute("created", ISO8601DateFormatter().string(from: Date()))
        try root.setAttribute("git_commit", Provenance.gitCommit)
        try root.setAttribute("machine", Provenance.machine)
        try root.setAttribute("versions", Provenance.versions)
        run = try root.createGroup("runs/\(runName)")
        try run.setAttribute("config", config)
        try run.setAttribute("seed", Int64(bitPattern: seed))
        try run.setAttribute("recipe", recipe)
        for (name, value) in attributes.sorted(by: { $0.key < $1.key }) { try run.setAttribute(name, value) }
        for (name, value) in strings.sorted(by: { $0.key < $1.key }) { try run.setAttribute(name, value) }
        try file.flush()
    }

    /// Reopens the log of a run being resumed from its checkpoint at `step`: rows logged after that
    /// step (the killed run got further than its last checkpoint) are dropped, so that the resumed run
    /// appends exactly what the uninterrupted run would have.
    init(resuming path: String, runName: String, atStep step: Int) throws {
        file = try HDF5File.open(path, writable: true)
        run = try file.root.group("runs/\(runName)")
        for section in Self.seriesSections where try run.exists(section) {
            let group = try run.group(section)
            let steps = try group.dataset("step").read(as: Int64.self)
            let keep = steps.firstIndex { $0 > Int64(step) } ?? steps.count
            for name in try group.childNames {
                let dataset = try group.dataset(name)
                if try dataset.count > keep { try dataset.truncate(to: keep) }
                series["\(section)/\(name)"] = dataset
            }
        }
        if try run.exists("samples") {
            let samples = try run.group("samples")
            // samples/stepN and samples/stepN_labels: N is the digits after "step".
            for name in try samples.childNames where (Int(name.dropFirst("step".count).prefix { $0.isNumber }) ?? 0) > step {
                try samples.remove(name)
            }
        }
        try run.setAttribute("resumed_at_step", Int64(step))
        try file.flush()
    }

    /// A copy of the whole log as it stands (root attributes and the run's group) under `run_log` in
    /// `root`, another file's root: a checkpoint carries the log of its step, so a resumed run restores
    /// exactly that log whatever a kill did to log.h5 since.
    func snapshot(into root: HDF5Group) throws {
        let snapshot = try root.createGroup(Self.snapshotGroup)
        try snapshot.copyAttributes(from: file.root)
        try snapshot.copy(run, to: String(run.path.dropFirst()))
    }

    static let snapshotGroup = "run_log"

    /// Replaces the log at `path` by the copy `snapshot(into:)` left in the checkpoint at `checkpointPath`
    /// (written beside and renamed into place). False, and nothing written, when the checkpoint holds no
    /// copy (one written before checkpoints carried their log).
    static func restore(_ path: String, fromCheckpoint checkpointPath: String) throws -> Bool {
        let checkpoint = try HDF5File.open(checkpointPath)
        defer { try? checkpoint.close() }
        guard try checkpoint.root.exists(snapshotGroup) else { return false }
        let snapshot = try checkpoint.root.group(snapshotGroup)
        let partial = path + ".partial"
        let restored = try HDF5File.create(partial, overwrite: true)
        do {
            try restored.root.copyAttributes(from: snapshot)
            try restored.root.copy(snapshot.group("runs"), to: "runs")
            try restored.close()
        } catch {
            try? restored.close()
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        guard rename(partial, path) == 0 else {
            throw RunFailure(description: "could not move the restored log \(partial) to \(path): \(String(cString: strerror(errno)))")
        }
        return true
    }

    /// Records config keys changed on resume (`--allow-change`): each as a line "step N: KEY OLD → NEW"
    /// appended to the run's `config_history` attribute; `config` becomes the config trained with from now on.
    func recordConfigChanges(atStep step: Int, _ changes: [ConfigChange], config: String) throws {
        let lines = changes.map { "step \(step): \($0.key) \($0.old) → \($0.new)" }
        let earlier = (try run.hasAttribute("config_history")) ? try run.stringAttribute("config_history") + "\n" : ""
        try run.setAttribute("config_history", earlier + lines.joined(separator: "\n"))
        try run.setAttribute("config", config)
    }

    /// The last evaluation's metrics (every eval/ series but `step` and the FLOPs count), in name order.
    func lastEvaluation() throws -> [(String, Double)] {
        guard try run.exists("eval") else { return [] }
        let eval = try run.group("eval")
        return try eval.childNames.filter { $0 != "step" && $0 != "flops_counted" }.sorted().compactMap { name in
            try eval.dataset(name).read(as: Double.self).last.map { (name, $0) }
        }
    }

    /// Stores generated images [N, C, S, S] in [0, 1] as uint8 under samples/stepN, the caption each was
    /// prompted with as its attribute `prompts` (one per line), and where the data have labels, the class
    /// each was prompted with under samples/stepN_labels.
    func appendSamples(step: Int, images: Tensor, labels: [Int32]?, prompts: [String]) throws {
        let bytes = (0..<images.count).map { UInt8((min(max(images.data[$0], 0), 1) * 255).rounded()) }
        let samples = try run.createDataset("samples/step\(step)", values: bytes, shape: images.shape)
        try samples.setAttribute("prompts", prompts.map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "\n"))
        if let labels { try run.createDataset("samples/step\(step)_labels", values: labels, shape: [labels.count]) }
    }

    /// Appends one row of values to `train/` or `eval/` (datasets are made on first use).
    func append(_ section: String, step: Int, _ values: [(String, Double)]) throws {
        try dataset("\(section)/step", Int64.self).append([Int64(step)])
        for (name, value) in values { try dataset("\(section)/\(name)", Double.self).append([value]) }
    }

    func flush() throws { try file.flush() }

    private func dataset<T: HDF5Element>(_ path: String, _ type: T.Type) throws -> HDF5Dataset {
        if let existing = series[path] { return existing }
        let created = try run.createExtendibleDataset(path, of: type)
        series[path] = created
        return created
    }
}

// `fusion sweep SWEEP.yaml`: a grid over config keys, each point a separate `fusion train` process
// (so a run stays a self-contained process, as a Slurm job array would run it), a configurable number
// at a time, merged at the end into one results file with one group per run. Re-running a sweep skips
// the runs that finished and resumes the ones that were killed.
//
//   name: scaling
//   base: configs/small.yaml             # an experiment config
//   overrides: [train.steps=400]         # applied to every run (optional)
//   points:                              # named override sets that vary together (optional),
//     - {name: xs, overrides: [recipe.model.width=64, recipe.model.layers=2, train.steps=150]}
//     - {name: s, overrides: [recipe.model.width=128, recipe.model.layers=4, train.steps=400]}
//   grid:                                # crossed with every combination of these values
//     recipe.recipe: [chameleon, showo, transfusion]
//     seed: [0, 1]
//   parallel: 1                          # runs at a time; each gets cores / parallel threads
//
// A sweep needs points, a grid, or both. A run applies the sweep's overrides, then its point's, then
// its grid values (a later one wins), and is named sweep-point-values ("scaling-xs-showo-1").
import Foundation
import Fusion
import Yams

struct SweepSpec {
    /// A named set of overrides that vary together, e.g. a model size and its token budget.
    struct Point: Equatable {
        let name: String
        let overrides: [String]
        static let keys = ["name", "overrides"]
    }

    let name: String
    let base: String
    let overrides: [String]
    let namedPoints: [Point]
    let grid: [(key: String, values: [String])]
    let parallel: Int

    static let keys = ["name", "base", "overrides", "points", "grid", "parallel"]

    static func load(_ path: String) throws -> SweepSpec {
        let text = try ConfigLoader.readFile(path)
        let node: Node
        do {
            guard let parsed = try Yams.compose(yaml: text) else { throw ConfigurationError("\(path): the sweep file is empty") }
            node = parsed
        } catch let error as ConfigurationError { throw error } catch {
            throw ConfigurationError("\(path): not valid YAML: \(error)")
        }
        guard let mapping = node.mapping else { throw ConfigurationError("\(path): a sweep is a mapping with keys \(keys.joined(separator: ", "))") }
        for key in mapping.keys.compactMap(\.string) where !keys.contains(key) {
            throw ConfigurationError("\(path): unknown key '\(key)'; the valid keys are \(keys.joined(separator: ", "))")
        }
        guard let name = mapping["name"]?.string, !name.isEmpty, !name.contains("/") else {
            throw ConfigurationError("\(path): 'name' is required (a name without '/')")
        }
        guard let base = mapping["base"]?.string else { throw ConfigurationError("\(path): 'base' (the experiment config every run starts from) is required") }
        let overrides = try overrideList(mapping["overrides"], key: "overrides", path: path)
        let namedPoints = try loadPoints(mapping["points"], path: path)
        var grid: [(String, [String])] = []
        if let gridValue = mapping["grid"] {
            guard let gridNode = gridValue.mapping, !gridNode.isEmpty else {
                throw ConfigurationError("\(path): 'grid' must map config keys to lists of values, e.g. recipe.recipe: [chameleon, showo]")
            }
            for (keyNode, valuesNode) in gridNode {
                guard let key = keyNode.string, let values = valuesNode.sequence?.compactMap(\.string), !values.isEmpty else {
                    throw ConfigurationError("\(path): grid.\(keyNode.string ?? "?") must be a non-empty list of values")
                }
                grid.append((key, values))
            }
        }
        guard !grid.isEmpty || !namedPoints.isEmpty else {
            throw ConfigurationError("\(path): a sweep needs 'grid' (config keys to lists of values, e.g. recipe.recipe: [chameleon, showo]), "
                                     + "'points' (named override sets), or both")
        }
        let parallel = mapping["parallel"].flatMap { $0.int } ?? 1
        guard parallel >= 1 else { throw ConfigurationError("\(path): parallel must be at least 1") }
        return SweepSpec(name: name, base: base, overrides: overrides, namedPoints: namedPoints, grid: grid, parallel: parallel)
    }

    /// A list of `key=value` strings (the sweep's overrides, or a point's).
    private static func overrideList(_ node: Node?, key: String, path: String) throws -> [String] {
        guard let node else { return [] }
        guard let items = node.sequence else {
            throw ConfigurationError("\(path): '\(key)' must be a list of key=value overrides, e.g. [train.steps=400]")
        }
        return try items.map { item in
            guard let text = item.string, let equals = text.firstIndex(of: "="), equals != text.startIndex else {
                throw ConfigurationError("\(path): \(key) entry '\(item.string ?? "\(item)")' is not a key=value override (e.g. train.steps=400)")
            }
            return text
        }
    }

    /// `points`: a list of mappings with exactly the keys `name` (required, unique, without '/' or
    /// spaces, since it becomes part of run names and directories) and `overrides`.
    private static func loadPoints(_ node: Node?, path: String) throws -> [Point] {
        guard let node else { return [] }
        guard let items = node.sequence, !items.isEmpty else {
            throw ConfigurationError("\(path): 'points' must be a non-empty list of {name: NAME, overrides: [key=value, ...]}")
        }
        var points: [Point] = []
        for (index, item) in items.enumerated() {
            guard let mapping = item.mapping else {
                throw ConfigurationError("\(path): points[\(index)] must be a mapping {name: NAME, overrides: [key=value, ...]}")
            }
            for key in mapping.keys.compactMap(\.string) where !Point.keys.contains(key) {
                throw ConfigurationError("\(path): points[\(index)]: unknown key '\(key)'; the valid keys are \(Point.keys.joined(separator: ", "))")
            }
            guard let name = mapping["name"]?.string, !name.isEmpty, !name.contains("/"), !name.contains(" ") else {
                throw ConfigurationError("\(path): points[\(index)] needs a 'name' (non-empty, without '/' or spaces); it names the runs")
            }
            guard !points.contains(where: { $0.name == name }) else {
                throw ConfigurationError("\(path): points[\(index)]: the name '\(name)' is used twice; every point needs its own name")
            }
            points.append(Point(name: name, overrides: try overrideList(mapping["overrides"], key: "points[\(index)].overrides", path: path)))
        }
        return points
    }

    /// The same sweep narrowed from the command line: only the named `points` (nil: all), and grid axes given
    /// new values (`seed=0,1`), so that e.g. a second seed of the small sizes joins the runs already in the
    /// sweep's directory under the names the full sweep would give them. Unknown names are errors.
    func narrowed(points selected: [String]?, grid replacements: [String]) throws -> SweepSpec {
        var namedPoints = self.namedPoints
        if let selected {
            let known = namedPoints.map(\.name)
            for name in selected where !known.contains(name) {
                throw ConfigurationError("sweep \(self.name): no point named '\(name)'; its points are "
                                         + (known.isEmpty ? "none (it has only a grid)" : known.joined(separator: ", ")))
            }
            namedPoints = namedPoints.filter { selected.contains($0.name) }
        }
        var grid = self.grid
        for replacement in replacements {
            guard let equals = replacement.firstIndex(of: "="), equals != replacement.startIndex else {
                throw ConfigurationError("--grid '\(replacement)': expected KEY=VALUE[,VALUE…], e.g. seed=0,1")
            }
            let key = String(replacement[..<equals])
            let values = replacement[replacement.index(after: equals)...].split(separator: ",").map(String.init)
            guard let axis = grid.firstIndex(where: { $0.key == key }) else {
                throw ConfigurationError("--grid \(key): sweep \(self.name) has no grid axis '\(key)' (its axes: "
                                         + "\(grid.map(\.key).joined(separator: ", "))); a new axis would rename every run, so add it to the sweep file")
            }
            guard !values.isEmpty, !values.contains(where: \.isEmpty) else {
                throw ConfigurationError("--grid \(key): give one or more comma-separated values, e.g. \(key)=\(grid[axis].values.joined(separator: ","))")
            }
            grid[axis].values = values
        }
        return SweepSpec(name: name, base: base, overrides: overrides, namedPoints: namedPoints, grid: grid, parallel: parallel)
    }

    /// Every run, as (run name, overrides): each point (or the sweep alone when there are none) crossed
    /// with every combination of the grid; a run is named by the sweep, its point and its values in grid
    /// order ("scaling-xs-showo-1"), and gets the sweep's overrides, its point's, then its grid values.
    var points: [(name: String, overrides: [String])] {
        var points: [(String, [String])] = namedPoints.isEmpty ? [(name, [])] : namedPoints.map { (name + "-" + $0.name, $0.overrides) }
        for (key, values) in grid {
            points = points.flatMap { point in
                values.map { value in
                    let tag = value.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: " ", with: "_")
                    return (point.0 + "-" + tag, point.1 + ["\(key)=\(value)"])
                }
            }
        }
        return points.map { ($0.0, overrides + $0.1) }
    }
}

enum Sweep {
    /// One run of a sweep, resolved: what it trains and on how many tokens.
    struct Plan {
        let name: String
        let recipe: String
        let seed: UInt64
        let nonEmbeddingParameters: Int
        let steps: Int
        let tokens: Int  // steps · batch_size · context_length
    }

    /// Resolves every run's config (base + overrides) before anything starts, so that a typo in the last
    /// point fails now rather than hours into the sweep.
    /// Every run resolved (so a bad key fails before anything starts), and checked to be scored on the
    /// same evaluation sets: runs whose metrics are compared must see the same held-out data.
    static func plan(_ spec: SweepSpec) throws -> [Plan] {
        var evaluationSets: [(name: String, sets: String)] = []
        let plans = try spec.points.map { point in
            let config: ExperimentConfig
            do { config = try ExperimentConfig.load(file: spec.base, overrides: point.overrides + ["name=\(point.name)"]) } catch {
                throw ConfigurationError("sweep \(spec.name), run \(point.name) (overrides \(point.overrides.joined(separator: " "))): \(error)")
            }
            evaluationSets.append((point.name, "eval.images=\(config.eval.images) eval.captions=\(config.eval.captions) "
                                   + "eval.text_tokens=\(config.eval.textTokens)"))
            return Plan(name: point.name, recipe: config.recipe.recipe, seed: config.seed,
                        nonEmbeddingParameters: config.recipe.nonEmbeddingParameterCount, steps: config.train.steps,
                        tokens: config.train.steps * config.train.batchSize * config.recipe.model.contextLength)
        }
        if let first = evaluationSets.first, let other = evaluationSets.first(where: { $0.sets != first.sets }) {
            throw ConfigurationError("sweep \(spec.name): runs disagree on the evaluation sets (\(first.name): \(first.sets); "
                                     + "\(other.name): \(other.sets)); their metrics would not be comparable. Set eval.images, "
                                     + "eval.captions and eval.text_tokens once, in the base config or the sweep's overrides")
        }
        return plans
    }

    /// The names of the runs in the order they start. One at a time, the sweep's own order; several at a
    /// time, the costliest first by the papers' training estimate 6·N·D (ties in the sweep's order), so that
    /// the sweep does not end on a large run alone on its share of the cores (longest-first scheduling).
    /// The results file lists the runs in the sweep's order either way.
    static func launchOrder(_ plans: [Plan], parallel: Int) -> [String] {
        guard parallel > 1 else { return plans.map(\.name) }
        func cost(_ plan: Plan) -> Double { 6 * Double(plan.nonEmbeddingParameters) * Double(plan.tokens) }
        return plans.enumerated().sorted { (cost($0.element), -$0.offset) > (cost($1.element), -$1.offset) }.map(\.element.name)
    }

    /// The plan as a table (fusion sweep --dry-run).
    static func describe(_ plans: [Plan]) -> String {
        var lines = ["run | recipe | seed | non-embedding parameters | steps | training tokens"]
        for plan in plans {
            lines.append("\(plan.name) | \(plan.recipe) | \(plan.seed) | \(plan.nonEmbeddingParameters) | \(plan.steps) | \(plan.tokens)")
        }
        let total = plans.reduce(0) { $0 + $1.tokens }
        lines.append("\(plans.count) run(s), \(total) training tokens in all")
        return lines.joined(separator: "\n")
    }

    /// Runs every point of the sweep not finished yet, then merges all into `directory/results.h5`.
    /// A run's environment: `FUSION_THREADS` = cores ÷ parallel (at least 1), so that runs side by side
    /// do not ask for more threads than the machine has (each pass's threads wait for each other, and an
    /// oversubscribed core stalls them all). A value the user set is kept.
    static func runEnvironment(_ environment: [String: String], parallel: Int, cores: Int) -> [String: String] {
        var environment = environment
        if environment[Parallel.threadsVariable] == nil {
            environment[Parallel.threadsVariable] = String(max(1, cores / max(1, parallel)))
        }
        return environment
    }

    static func run(_ spec: SweepSpec, directory: String, executable: String) throws {
        let fm = FileManager.default
        let order = launchOrder(try plan(spec), parallel: spec.parallel)
        try fm.createDirectory(atPath: "\(directory)/runs", withIntermediateDirectories: true)
        let points = spec.points
        var pending: [(name: String, overrides: [String], directory: String, resume: Bool)] = []
        for point in order.map({ name in points.first { $0.name == name }! }) {
            let runDirectory = "\(directory)/runs/\(point.name)"
            if fm.fileExists(atPath: "\(runDirectory)/finished") {
                print("sweep: \(point.name) finished already, skipped")
                continue
            }
            pending.append((point.name, point.overrides, runDirectory, fm.fileExists(atPath: "\(runDirectory)/checkpoint.h5")))
        }
        print("sweep \(spec.name): \(points.count) runs, \(pending.count) to do, \(spec.parallel) at a time")
        // A signal reaches every running run too (each saves a checkpoint and stops); no new run starts.
        Interruption.install()
        defer { Interruption.uninstall() }
        var running: [(ChildProcess, String)] = []
        var failures: [String] = [], interrupted: [String] = []
        let progress = SweepProgress(total: pending.count)
        func reap(waitForOne: Bool) {
            while true {
                var ended: (index: Int, ending: ChildProcess.Ending)? = nil
                for index in running.indices {  // poll reaps the child it finds ended: ask each once
                    if let ending = running[index].0.poll() { ended = (index, ending); break }
                }
                if let (index, ending) = ended {
                    let (process, name) = running.remove(at: index)
                    Interruption.stopForwarding(to: process.pid)
                    let status = ending.status
                    if status == 128 + SIGINT || status == 128 + SIGTERM { interrupted.append(name) } else if status != 0 { failures.append(name) }
                    progress.runEnded()
                    progress.say("sweep: \(name) " + (status == 0 ? "finished" : interrupted.last == name ? "interrupted (resumes when the sweep runs again)"
                                                                                                 : "failed (status \(status))"))
                    if !waitForOne { continue }
                    return
                }
                if !waitForOne || running.isEmpty { return }
                progress.show(running: running.map { ($0.1, "\(directory)/runs/\($0.1)/output.txt") })
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
        for run in pending where Interruption.pending == nil {
            while running.count >= spec.parallel { reap(waitForOne: true) }
            if Interruption.pending != nil { break }
            try fm.createDirectory(atPath: run.directory, withIntermediateDirectories: true)
            // --resume: a run with a checkpoint continues from it, one killed before its first starts again.
            let output = "\(run.directory)/output.txt"
            let process = try ChildProcess.start(executable, ["train", spec.base] + run.overrides + ["name=\(run.name)", "--out", run.directory, "--resume"],
                                                 environment: Self.runEnvironment(ProcessInfo.processInfo.environment, parallel: spec.parallel,
                                                                                  cores: ProcessInfo.processInfo.activeProcessorCount),
                                                 standardOutput: .file(output), standardError: .file(output))
            Interruption.forward(to: process.pid)
            if let signal = Interruption.pending { kill(process.pid, signal) }  // arrived while it started
            progress.say("sweep: started \(run.name)\(run.resume ? " (resuming)" : "") → \(run.directory)/output.txt")
            running.append((process, run.name))
        }
        while !running.isEmpty { reap(waitForOne: true) }
        try merge(points.map(\.name), directory: directory)
        if let signal = Interruption.pending {
            throw Interrupted(signal: signal, description: "sweep \(spec.name) interrupted by \(Interruption.name(signal))"
                              + (interrupted.isEmpty ? "" : " (\(interrupted.joined(separator: ", ")) saved a checkpoint)")
                              + "; run the same command again to continue: finished runs are skipped, stopped ones resume")
        }
        if !failures.isEmpty {
            throw RunFailure(description: "sweep \(spec.name): \(failures.count) run(s) failed: \(failures.joined(separator: ", ")); see their output.txt, then run the sweep again to retry them")
        }
    }

    /// One results file with a group per finished run in `directory/runs`: this sweep's runs in its order,
    /// then any other finished run there (an earlier, wider or narrower sweep into the same directory, such
    /// as `--grid seed=1` over a few points), so that no run already written drops out of the results.
    /// Written beside and then renamed over the old file, so it is never half-written.
    static func merge(_ names: [String], directory: String) throws {
        let path = "\(directory)/results.h5", partial = "\(directory)/results.h5.partial"
        let present = ((try? FileManager.default.contentsOfDirectory(atPath: "\(directory)/runs")) ?? []).sorted()
        let others = present.filter { !names.contains($0) && FileManager.default.fileExists(atPath: "\(directory)/runs/\($0)/finished") }
        if !others.isEmpty { print("sweep: also merging \(others.count) earlier run(s) of \(directory)/runs: \(others.joined(separator: ", "))") }
        let names = names + others
        let merged = try HDF5File.create(partial, overwrite: true)
        try merged.root.setAttribute("schema_version", RunLog.schemaVersion)
        try merged.root.setAttribute("created", ISO8601DateFormatter().string(from: Date()))
        try merged.root.setAttribute("git_commit", Provenance.gitCommit)
        try merged.root.setAttribute("machine", Provenance.machine)
        try merged.root.setAttribute("versions", Provenance.versions)
        var count = 0
        for name in names {
            let log = "\(directory)/runs/\(name)/log.h5"
            guard FileManager.default.fileExists(atPath: "\(directory)/runs/\(name)/finished"),
                  let file = try? HDF5File.open(log), let run = try? file.root.group("runs/\(name)") else { continue }
            try merged.root.copy(run, to: "runs/\(name)")
            count += 1
        }
        try merged.close()
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: partial, toPath: path)
        print("sweep: \(count) finished run(s) merged into \(path)")
    }
}

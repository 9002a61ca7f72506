// Sweeps as Slurm job arrays (fusion sweep FILE --slurm): the script each pending run becomes, and a
// real one-node cluster (scripts/slurm-cluster: munged, slurmctld, slurmd under a temporary directory)
// that trains a tiny 3-run sweep through sbatch to a merged results.h5, then trains again a run whose
// task is run a second time after it finished (as a requeued task would be).
import XCTest
import Foundation
@testable import Experiments
import Fusion

final class SlurmSweepTests: XCTestCase {
    /// A 3-run sweep of the fault tests' tiny config (a few seconds a run), one run a seed.
    func tinySweep(in directory: String) throws -> String {
        let overrides = RunFaultTests.tinyOverrides(recipe: "chameleon", cache: directory + "/cache").map { "\"\($0)\"" }
        let path = directory + "/sweep.yaml"
        try """
            name: slurmtiny
            base: configs/tiny.yaml
            overrides: [\(overrides.joined(separator: ", "))]
            grid:
              seed: [0, 1, 2]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testEachPendingRunIsAnArrayTaskThatResumesIt() throws {
        let directory = try temporaryDirectory()
        let spec = try SweepSpec.load(try tinySweep(in: directory))
        let tasks = spec.points.map { SlurmSweep.Task(name: $0.name, overrides: $0.overrides + ["data.cache_directory=/tmp/a cache's"]) }
        let single = SlurmSweep.script(spec, tasks: tasks, directory: "/sweeps/x", executable: "/opt/fusion", workingDirectory: "/repo",
                                       resources: SlurmSweep.Resources(cpusPerTask: 2))
        for line in ["#SBATCH --job-name=fusion-slurmtiny", "#SBATCH --array=0-2", "#SBATCH --ntasks=1", "#SBATCH --cpus-per-task=2",
                     "#SBATCH --chdir=/repo", "#SBATCH --requeue", "exec /opt/fusion \"${arguments[@]}\" >> \"$output\" 2>&1"] {
            XCTAssertTrue(single.contains(line + "\n"), "missing \(line) in\n\(single)")
        }
        XCTAssertTrue(single.contains("  1) run=slurmtiny-1; arguments=(train configs/tiny.yaml recipe=chameleon "), single)
        XCTAssertTrue(single.contains("seed=1 'data.cache_directory=/tmp/a cache'\\''s' name=slurmtiny-1 --out /sweeps/x/runs/slurmtiny-1 --resume) ;;"), single)
        XCTAssertFalse(single.contains("--time") || single.contains("mpirun") || single.contains("--partition"), single)

        let parallel = SlurmSweep.script(spec, tasks: Array(tasks.prefix(1)), directory: "/sweeps/x", executable: "/opt/fusion", workingDirectory: "/repo",
                                         resources: SlurmSweep.Resources(partition: "cpu", time: "1:00:00", ntasks: 4, account: "lab"))
        for line in ["#SBATCH --array=0-0", "#SBATCH --ntasks=4", "#SBATCH --partition=cpu", "#SBATCH --account=lab", "#SBATCH --time=1:00:00",
                     "#SBATCH --signal=B:TERM@120", "exec mpirun -np \"$SLURM_NTASKS\" /opt/fusion \"${arguments[@]}\" >> \"$output\" 2>&1"] {
            XCTAssertTrue(parallel.contains(line + "\n"), "missing \(line) in\n\(parallel)")
        }

        // bash reads both; run outside Slurm, the script refuses rather than guessing a task.
        for script in [single, parallel] {
            let path = directory + "/check.sbatch"
            try script.write(toFile: path, atomically: true, encoding: .utf8)
            let syntax = try shell("/bin/bash", ["-n", path])
            XCTAssertEqual(syntax.status, 0, syntax.output)
            let outside = try shell("/usr/bin/env", ["-u", "SLURM_ARRAY_TASK_ID", "/bin/bash", path])
            XCTAssertNotEqual(outside.status, 0, outside.output)
        }
    }

    func testSlurmOptionsWithoutSlurmAreRefused() throws {
        let directory = try temporaryDirectory()
        let sweep = try tinySweep(in: directory)
        let result = try FusionBinary.run(["sweep", sweep, "--ntasks", "2", "--out", directory + "/s"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("--ntasks apply to --slurm submissions only"), result.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/s"))
    }

    // MARK: A real cluster

    func shell(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
        try runProgram(executable, arguments, environment: environment)
    }

    /// Waits until Slurm holds no task of the sweep (at most `limit` seconds).
    func waitForTheArray(_ environment: [String: String], limit: Double = 600) throws {
        let started = Date()
        while Date().timeIntervalSince(started) < limit {
            let queue = try shell("/usr/bin/squeue", ["-h", "-n", "fusion-slurmtiny"], environment: environment)
            XCTAssertEqual(queue.status, 0, queue.output)
            if queue.status != 0 || queue.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return }
            Thread.sleep(forTimeInterval: 1)
        }
        XCTFail("the sweep's job array was still queued after \(limit) s")
    }

    func testATinySweepRunsThroughARealSlurmClusterToMergedResults() throws {
        let script = FileManager.default.currentDirectoryPath + "/scripts/slurm-cluster"
        let check = try shell(script, ["check"])
        if check.status == 2 { throw XCTSkip("no Slurm here (\(check.output.trimmingCharacters(in: .whitespacesAndNewlines))); scripts/setup installs it") }
        XCTAssertEqual(check.status, 0, check.output)
        let directory = try temporaryDirectory()
        let cluster = directory + "/cluster"
        let start = try shell(script, ["start", cluster])
        addTeardownBlock { _ = try? self.shell(script, ["stop", cluster]) }
        XCTAssertEqual(start.status, 0, start.output)
        guard start.status == 0 else { return }
        let environment = ["SLURM_CONF": cluster + "/slurm.conf"]
        let sweep = try tinySweep(in: directory), out = directory + "/sweep"

        let submitted = try FusionBinary.run(["sweep", sweep, "--slurm", "--cpus-per-task", "1", "--out", out], environment: environment)
        XCTAssertEqual(submitted.status, 0, submitted.output)
        XCTAssertTrue(submitted.output.contains("submitted job array") && submitted.output.contains("of 3 run(s)"), submitted.output)
        let again = try FusionBinary.run(["sweep", sweep, "--slurm", "--out", out], environment: environment)
        XCTAssertTrue(again.output.contains("queued or running already") || again.output.contains("no run to submit"),
                      "a second submission must not train a queued run twice: \(again.output)")
        try waitForTheArray(environment)

        let merged = try FusionBinary.run(["sweep", sweep, "--merge", "--out", out], environment: environment)
        XCTAssertEqual(merged.status, 0, merged.output)
        let outputs = try logs(out)
        XCTAssertTrue(merged.output.contains("3 of 3 run(s) finished"), merged.output + outputs)
        XCTAssertEqual(try runsInResults(out + "/results.h5"), ["slurmtiny-0", "slurmtiny-1", "slurmtiny-2"])

        // A task that runs again after its run finished (requeued, say) changes nothing: here its mark is
        // taken away, so the sweep submits it again, and the run completes from its last checkpoint.
        let before = try RunFaultTests.outcome(of: out + "/runs/slurmtiny-1", run: "slurmtiny-1")
        try FileManager.default.removeItem(atPath: out + "/runs/slurmtiny-1/finished")
        let resubmitted = try FusionBinary.run(["sweep", sweep, "--slurm", "--out", out], environment: environment)
        XCTAssertTrue(resubmitted.output.contains("of 1 run(s) (slurmtiny-1)"), resubmitted.output)
        try waitForTheArray(environment)
        let last = try FusionBinary.run(["sweep", sweep, "--merge", "--out", out], environment: environment)
        let lastOutputs = try logs(out)
        XCTAssertTrue(last.output.contains("3 of 3 run(s) finished"), last.output + lastOutputs)
        let after = try RunFaultTests.outcome(of: out + "/runs/slurmtiny-1", run: "slurmtiny-1")
        XCTAssertEqual(Set(before.keys), Set(after.keys))
        for (key, values) in before { XCTAssertEqual(values.map(\.bitPattern), after[key]?.map(\.bitPattern), key) }
    }

    /// Each run's output, for a failure message.
    func logs(_ sweep: String) throws -> String {
        let runs = (try? FileManager.default.contentsOfDirectory(atPath: sweep + "/runs")) ?? []
        return runs.sorted().map { "\n--- \($0):\n" + ((try? String(contentsOfFile: "\(sweep)/runs/\($0)/output.txt", encoding: .utf8)) ?? "(no output)") }.joined()
    }

    func runsInResults(_ path: String) throws -> [String] {
        let file = try HDF5File.open(path)
        defer { try? file.close() }
        return try file.root.group("runs").childNames.sorted()
    }
}

// Faults a run meets on a real machine: a kill (SIGKILL) at any moment of its life, SIGINT and SIGTERM
// from a terminal or a scheduler, a divergence, a finished run resumed by mistake, files a killed process
// left, two processes on one run. Each ends in a clear message, or in a run that, continued with the same
// command and `--resume`, ends bit for bit where an uninterrupted run ends. Kills land at named points
// of the code (FUSION_FAULT, see FaultInjection), so each moment is hit exactly, not by timing.
import XCTest
import Foundation
@testable import Experiments
import Fusion

final class RunFaultTests: XCTestCase {
    /// configs/tiny.yaml cut to 12 steps of a few seconds: log rows every 2 steps, evaluations at 6 and 12,
    /// checkpoints at 4, 8 and 12.
    static func tinyOverrides(recipe: String, cache: String) -> [String] {
        ["recipe=\(recipe)", "recipe.model.width=32", "recipe.model.layers=2", "recipe.model.heads=2",
         "recipe.model.context_length=96", "data.train_images=300", "data.cache_directory=\(cache)",
         "train.steps=12", "train.batch_size=2", "train.warmup_steps=2", "train.log_every=2", "train.checkpoint_every=4",
         "train.eval_every=6", "eval.images=8", "eval.captions=4", "eval.text_tokens=512", "eval.maskgit_steps=4", "eval.denoising_steps=4"]
    }

    /// What two runs of one config must share, as numbers: every logged series but the wall-clock rate, the
    /// samples, and the checkpoint's step, every tensor and every optimiser state tensor.
    static func outcome(of directory: String, run: String = "tiny") throws -> [String: [Double]] {
        var result: [String: [Double]] = [:]
        let log = try HDF5File.open(directory + "/log.h5")
        for section in ["train", "eval", "samples"] {
            let group = try log.root.group("runs/\(run)/\(section)")
            for name in try group.childNames where name != "tokens_per_second" {
                let dataset = try group.dataset(name)
                switch dataset.elementType {
                case .int64?: result["log/\(section)/\(name)"] = try dataset.read(as: Int64.self).map(Double.init)
                case .uint8?: result["log/\(section)/\(name)"] = try dataset.read(as: UInt8.self).map(Double.init)
                case .int32?: result["log/\(section)/\(name)"] = try dataset.read(as: Int32.self).map(Double.init)
                default: result["log/\(section)/\(name)"] = try dataset.read(as: Double.self)
                }
            }
        }
        try log.close()
        let checkpoint = try Checkpoint.read(from: directory + "/checkpoint.h5")
        result["checkpoint/step"] = [Double(checkpoint.step)]
        // What eval and sample need beside the tensors: the tokenizer, and the log of the step for a resume.
        let file = try HDF5File.open(directory + "/checkpoint.h5")
        result["checkpoint/has_tokenizer_and_log"] = [try file.root.exists("tokenizer") && file.root.exists(RunLog.snapshotGroup) ? 1 : 0]
        try file.close()
        for (name, tensor) in checkpoint.tensors { result["checkpoint/tensors/\(name)"] = tensor.array.map(Double.init) }
        for (name, tensor) in checkpoint.optimizerState { result["checkpoint/optimizer/\(name)"] = tensor.array.map(Double.init) }
        return result
    }

    private func outcome(of directory: String, run: String = "tiny") throws -> [String: [Double]] {
        try Self.outcome(of: directory, run: run)
    }

    /// Names of the entries that differ between two outcomes (empty when equal bit for bit).
    private func differences(_ a: [String: [Double]], _ b: [String: [Double]]) -> [String] {
        Set(a.keys).union(b.keys).sorted().filter { key in
            guard let x = a[key], let y = b[key], x.count == y.count else { return true }
            return zip(x, y).contains { $0.bitPattern != $1.bitPattern }
        }
    }

    /// Kills a tiny run at 13 moments spread over its whole life, and at two moments in a row in one case;
    /// each time the same command with --resume ends with the uninterrupted run's log and checkpoint, bit
    /// for bit, with its finished mark and no temporary file left.
    func testARunKilledAtAnyMomentResumesToTheUninterruptedResult() throws {
        let root = try temporaryDirectory()
        let command = ["train", "configs/tiny.yaml"] + Self.tinyOverrides(recipe: "showo", cache: root + "/cache")
        let whole = try FusionBinary.run(command + ["--out", root + "/whole"])
        XCTAssertEqual(whole.status, 0, whole.output)
        let expected = try outcome(of: root + "/whole")
        XCTAssertEqual(expected["log/train/step"], [2, 4, 6, 8, 10, 12])
        XCTAssertEqual(expected["log/eval/step"], [6, 12])

        // (faults armed in the first process, [faults of a second attempt], how the first must end)
        let cases: [(faults: String, then: [String], ends: Int32)] = [
            ("log.created", [], SIGKILL),               // while log.h5 is being created (the 48-byte file)
            ("train.step#1", [], SIGKILL),              // inside the first step, before any row or checkpoint
            ("log.appended#1", [], SIGKILL),            // a train row appended, not yet flushed
            ("checkpoint.partial#1", [], SIGKILL),      // inside the first checkpoint write
            ("checkpoint.renamed#1", [], SIGKILL),      // just after its rename
            ("train.step#5", [], SIGKILL),              // between log rows, after the first checkpoint
            ("eval.done#1", [], SIGKILL),               // inside the first evaluation (samples logged, metrics not)
            ("checkpoint.partial#2", [], SIGKILL),      // inside the second checkpoint write
            ("eval.done#2", [], SIGKILL),               // inside the last evaluation
            ("checkpoint.renamed#3", [], SIGKILL),      // the last checkpoint renamed, the run not marked finished
            ("finishing", [], SIGKILL),                 // everything written but the finished mark
            ("train.step#7:TERM", [], SIGTERM),         // a scheduler's SIGTERM between log rows
            ("train.step#3:INT", [], SIGINT),           // Ctrl-C before the first checkpoint
            ("checkpoint.renamed#2", ["log.appended#1", "train.step#2:TERM"], SIGKILL),  // killed again while resuming, twice
        ]
        for (index, fault) in cases.enumerated() {
            let directory = root + "/case\(index)"
            let first = try FusionBinary.run(command + ["--out", directory], environment: [FaultInjection.variable: fault.faults])
            if fault.ends == SIGKILL {
                XCTAssertEqual(first.signal, SIGKILL, "\(fault.faults): the fault did not kill the run: \(first.output)")
            } else {
                // SIGINT and SIGTERM: the step ends, a checkpoint is saved, the command to continue is printed.
                XCTAssertNil(first.signal, "\(fault.faults): \(first.output)")
                XCTAssertEqual(first.status, 128 + fault.ends, "\(fault.faults): \(first.output)")
                XCTAssertTrue(first.output.contains("resume with: ") && first.output.contains("--out \(directory) --resume"), first.output)
            }
            for (attempt, faults) in fault.then.enumerated() {
                let again = try FusionBinary.run(command + ["--out", directory, "--resume"], environment: [FaultInjection.variable: faults])
                XCTAssertNotEqual(again.status, 0, "\(fault.faults), attempt \(attempt + 2) (\(faults)) was not stopped: \(again.output)")
            }
            let resumed = try FusionBinary.run(command + ["--out", directory, "--resume"])
            XCTAssertEqual(resumed.status, 0, "\(fault.faults): \(resumed.output)")
            XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/finished"), fault.faults)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains(".partial") }
            XCTAssertEqual(leftovers, [], fault.faults)
            let differing = try differences(expected, outcome(of: directory))
            XCTAssertEqual(differing, [], "\(fault.faults): these differ from the uninterrupted run after resuming")
        }
    }

    /// Ctrl-C twice stops at once (exit 130) without waiting for the step or writing a checkpoint.
    func testASecondCtrlCStopsAtOnce() throws {
        let root = try temporaryDirectory()
        let command = ["train", "configs/tiny.yaml"] + Self.tinyOverrides(recipe: "chameleon", cache: root + "/cache") + ["--out", root + "/run"]
        let result = try FusionBinary.run(command, environment: [FaultInjection.variable: "train.step#6:INT,train.step#6:INT"])
        XCTAssertEqual(result.status, 130, result.output)
        XCTAssertTrue(result.output.contains("second Ctrl-C"), result.output)
        // The checkpoint of step 4 is the last one: no checkpoint of step 6 was written on the way out.
        XCTAssertEqual(try Checkpoint.read(from: root + "/run/checkpoint.h5").step, 4)
    }

    /// `--resume` of a finished run says so and changes no file; a finished run without its checkpoint is
    /// not started again over its log.
    func testResumingAFinishedRunChangesNothing() throws {
        let root = try temporaryDirectory()
        let config = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: Self.tinyOverrides(recipe: "transfusion", cache: root + "/cache"))
        let yaml = try ConfigLoader.yaml(config), directory = root + "/run"
        let metrics = try ExperimentRun.run(config, yaml: yaml, directory: directory, overwrite: false, resume: false)
        func files() throws -> [String: Data] {
            var contents: [String: Data] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
                contents[name] = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
            }
            return contents
        }
        let before = try files()
        let again = try ExperimentRun.run(config, yaml: yaml, directory: directory, overwrite: false, resume: true)
        XCTAssertEqual(try files(), before)
        XCTAssertEqual(again.map(\.0), metrics.map(\.0))
        XCTAssertEqual(again.map(\.1), metrics.map(\.1))

        try FileManager.default.removeItem(atPath: directory + "/checkpoint.h5")
        XCTAssertThrowsError(try ExperimentRun.run(config, yaml: yaml, directory: directory, overwrite: false, resume: true)) {
            XCTAssert("\($0)".contains("finished run but no checkpoint.h5") && "\($0)".contains("--overwrite"), "\($0)")
        }
        XCTAssertEqual(try files()["log.h5"], before["log.h5"])
    }

    /// A divergence before the first checkpoint says how to go on with a lower learning rate; following the
    /// advice (--resume --allow-change train.learning_rate) trains the run, and a change made on resume
    /// from a checkpoint is recorded in the log. Changes not allowed are refused, each named.
    func testDivergenceAdviceCanBeFollowedAndChangesAreRecorded() throws {
        let root = try temporaryDirectory()
        let overrides = Self.tinyOverrides(recipe: "chameleon", cache: root + "/cache")
        let directory = root + "/run"
        let diverging = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: overrides + ["train.learning_rate=1e30"])
        XCTAssertThrowsError(try ExperimentRun.run(diverging, yaml: try ConfigLoader.yaml(diverging), directory: directory,
                                                   overwrite: false, resume: false)) { error in
            let message = "\(error)"
            XCTAssert(message.contains("not finite") || message.contains("nan") || message.contains("inf"), message)
            XCTAssert(message.contains("train.learning_rate=3.33") && message.contains("--resume --allow-change train.learning_rate"), message)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/checkpoint.h5"), "a diverged state was checkpointed")
        let calm = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: overrides)
        let calmYAML = try ConfigLoader.yaml(calm)
        try ExperimentRun.run(calm, yaml: calmYAML, directory: directory, overwrite: false, resume: true,
                              allowChanges: ["train.learning_rate"], stopAfterStep: 5)

        // From the checkpoint of step 4: refused unless allowed, then recorded.
        var faster = calm
        faster.train.learningRate *= 2
        faster.train.weightDecay = 0.05
        let fasterYAML = try ConfigLoader.yaml(faster)
        XCTAssertThrowsError(try ExperimentRun.run(faster, yaml: fasterYAML, directory: directory, overwrite: false, resume: true,
                                                   allowChanges: ["train.learning_rate"])) { error in
            let message = "\(error)"
            XCTAssert(message.contains("train.weight_decay") && message.contains("--allow-change train.weight_decay"), message)
            XCTAssertFalse(message.contains("--allow-change train.learning_rate"), message)
        }
        try ExperimentRun.run(faster, yaml: fasterYAML, directory: directory, overwrite: false, resume: true,
                              allowChanges: ["train.learning_rate", "train.weight_decay"])
        let log = try HDF5File.open(directory + "/log.h5")
        let run = try log.root.group("runs/tiny")
        let history = try run.stringAttribute("config_history")
        XCTAssert(history.contains("step 4: train.learning_rate \(calm.train.learningRate) → \(faster.train.learningRate)"), history)
        XCTAssert(history.contains("step 4: train.weight_decay"), history)
        XCTAssertEqual(try run.stringAttribute("config"), fasterYAML)
        XCTAssertEqual(try Checkpoint.read(from: directory + "/checkpoint.h5").metadata["config"], fasterYAML)
    }

    /// A starting run removes the temporary checkpoint files a killed one left; a second process on a
    /// running run's directory is refused.
    func testStaleTemporaryFilesAreRemovedAndOneProcessHoldsARun() throws {
        let root = try temporaryDirectory()
        let config = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: Self.tinyOverrides(recipe: "chameleon", cache: root + "/cache"))
        let yaml = try ConfigLoader.yaml(config), directory = root + "/run"
        try ExperimentRun.run(config, yaml: yaml, directory: directory, overwrite: false, resume: false, stopAfterStep: 4)
        for stale in ["checkpoint.h5.partial-4242", "checkpoint.h5.partial-77", "log.h5.partial"] {
            try Data(repeating: 7, count: 1000).write(to: URL(fileURLWithPath: directory + "/" + stale))
        }
        let held = try RunDirectoryLock(directory)
        XCTAssertThrowsError(try ExperimentRun.run(config, yaml: yaml, directory: directory, overwrite: false, resume: true)) {
            XCTAssert("\($0)".contains("another fusion train is running"), "\($0)")
        }
        held.release()
        try ExperimentRun.run(config, yaml: yaml, directory: directory, overwrite: false, resume: true)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains("partial") }, [])
    }

    /// Config files that are not configs, and evaluation settings of another recipe, are refused by name.
    func testConfigFilesAndEvaluationSettingsThatCannotApplyAreRefused() throws {
        let root = try temporaryDirectory()
        try "".write(toFile: root + "/empty.yaml", atomically: true, encoding: .utf8)
        try "# only a comment\n".write(toFile: root + "/comment.yaml", atomically: true, encoding: .utf8)
        for path in [root + "/empty.yaml", root + "/comment.yaml"] {
            XCTAssertThrowsError(try ExperimentConfig.load(file: path, overrides: [])) { XCTAssert("\($0)".contains("holds no YAML"), "\($0)") }
        }
        XCTAssertThrowsError(try ExperimentConfig.load(file: root, overrides: [])) { XCTAssert("\($0)".contains("is a directory"), "\($0)") }
        try "{}\n".write(toFile: root + "/defaults.yaml", atomically: true, encoding: .utf8)
        XCTAssertEqual(try ExperimentConfig.load(file: root + "/defaults.yaml", overrides: []), try ExperimentConfig.load(file: nil, overrides: []))

        let run = root + "/run"
        let trained = try FusionBinary.run(["train", "configs/tiny.yaml"] + Self.tinyOverrides(recipe: "transfusion", cache: root + "/cache")
                                           + ["train.steps=2", "train.warmup_steps=1", "train.eval_every=2", "train.checkpoint_every=2", "--out", run])
        XCTAssertEqual(trained.status, 0, trained.output)
        let eval = try FusionBinary.run(["eval", run, "eval.maskgit_steps=4"])
        XCTAssertNotEqual(eval.status, 0)
        XCTAssert(eval.output.contains("eval.maskgit_steps applies to recipes whose images are masked_tokens")
                  && eval.output.contains("eval.denoising_steps"), eval.output)
        let prompt = String(repeating: "a very long prompt ", count: 40)
        let sample = try FusionBinary.run(["sample", run, "--prompt", prompt, "--count", "1", "--out", root + "/x.png"])
        XCTAssertNotEqual(sample.status, 0)
        XCTAssert(sample.output.contains("recipe.model.context_length") && sample.output.contains("shorten the prompt"), sample.output)
        XCTAssertFalse(sample.output.contains("model.contextLength"), sample.output)
    }
}

// The experiment commands: train, eval, sample, sweep, report, analyze, data. Each is a thin shell around the
// code that does the work (ExperimentRun, Evaluation, TrainedRun, Sweep, Report, ScalingAnalysis), so that tests and
// scripts can call the same code.
import ArgumentParser
import Foundation
import Fusion

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train",
        abstract: "Train a recipe from a YAML config plus key=value overrides; writes log.h5, checkpoint.h5 and sample grids into --out.",
        discussion: "Example: fusion train configs/small.yaml recipe=showo model.layers=6 train.steps=2000")
    @Argument(help: "The experiment config (YAML).") var config: String
    @Argument(help: "Overrides, key=value with dotted keys (recipe=showo, train.learning_rate=3e-4).") var overrides: [String] = []
    @Option(help: "Directory of the run (default runs/NAME).") var out: String?
    @Flag(help: "Continue a stopped run from its checkpoint (ends with the numbers of an uninterrupted run); start it from step 0 if it stopped before its first checkpoint; do nothing if it finished.") var resume = false
    @Option(name: .customLong("allow-change"), help: "With --resume: a config key that may differ from the checkpoint's (e.g. train.learning_rate after a divergence); recorded in the log's config_history. Repeatable.")
    var allowChange: [String] = []
    @Flag(help: "Replace the files of an existing run in --out.") var overwrite = false
    @Flag(help: "Print the resolved config and stop.") var printConfig = false
    @Flag(help: "Print the model's parameters and FLOPs per position (counted on one step, and 6·N) and stop.") var flops = false
    @Option(help: .hidden) var stopAfterStep: Int?  // tests: end the process after this step's checkpoint, as a kill would

    func run() throws {
        let resolved = try ExperimentConfig.load(file: config, overrides: overrides)
        let yaml = try ConfigLoader.yaml(resolved)
        if printConfig { print(yaml); return }
        if flops {
            let f = try ExperimentRun.flopsPerPosition(resolved)
            print("\(resolved.recipe.recipe): \(f.parameters) parameters (\(f.nonEmbedding) non-embedding); training FLOPs per position: "
                  + String(format: "%.4g counted (forward + backward), %.4g by 6·N", f.counted, f.estimate))
            return
        }
        guard !(resume && overwrite) else { throw ValidationError("--resume and --overwrite exclude each other") }
        guard allowChange.isEmpty || resume else { throw ValidationError("--allow-change applies to --resume only (a new run has no earlier config)") }
        try ExperimentRun.run(resolved, yaml: yaml, directory: out ?? "runs/\(resolved.name)", overwrite: overwrite, resume: resume,
                              allowChanges: allowChange, command: CommandLine.arguments, stopAfterStep: stopAfterStep)
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval",
        abstract: "Evaluate a trained run (its directory) on the fixed evaluation sets and print the metrics.",
        discussion: """
            eval.* overrides change how the trained model is evaluated without training it again, e.g. Show-o's \
            sampling steps: fusion eval runs/showo eval.maskgit_steps=4. Each evaluation is logged to its own \
            eval-stepN[-overrides].h5 in the run's directory.
            """)
    @Argument(help: "The run's directory (fusion train --out).") var runDirectory: String
    @Argument(help: "Evaluation overrides, eval.KEY=VALUE (eval.maskgit_steps=4, eval.guidance_scale=3, eval.images=1000).")
    var overrides: [String] = []
    @Option(help: "Override eval.images (N for fd_fmnist/kid_fmnist).") var images: Int?

    func run() throws {
        for override in overrides where !override.hasPrefix("eval.") {
            throw ValidationError("'\(override)': only eval.* keys can change after training (the model is the trained run's); "
                                  + "to change anything else, train a new run")
        }
        let trained = try TrainedRun(directory: runDirectory)
        let objective = trained.model.config.imageObjective
        for override in overrides {
            let key = String(override.dropFirst("eval.".count).prefix { $0 != "=" })
            if let objectives = ExperimentConfig.evalKeysByObjective[key], !objectives.contains(objective) {
                let own = ExperimentConfig.evalKeysByObjective.filter { $0.value.contains(objective) }.keys.sorted().map { "eval.\($0)" }
                throw ValidationError("'\(override)': eval.\(key) applies to recipes whose images are "
                                      + objectives.map(\.rawValue).joined(separator: " or ") + "; this run (\(trained.model.config.recipe)) "
                                      + "makes images by \(objective.rawValue), whose sampler settings are \(own.joined(separator: ", "))")
            }
        }
        let changes = overrides + (images.map { ["eval.images=\($0)"] } ?? [])
        let config = try ConfigLoader.load(ExperimentConfig.self, yaml: nil, source: "\(runDirectory) (the trained run's config)",
                                           overrides: changes, defaults: trained.config)
        let progress = Progress(total: 1)
        let evaluation = Evaluation(model: trained.model, data: trained.data, config: config, progress: progress,
                                    metrics: ImageMetrics(try ReferenceClassifier.loadCommitted(path: config.data.reference)))
        // eval-step200-maskgit_steps4: one file per evaluation setting, so no earlier evaluation is replaced.
        let suffix = changes.map { "-" + $0.dropFirst("eval.".count).replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "/", with: "_") }.joined()
        let name = "eval-step\(trained.step)\(suffix)"
        let log = try RunLog(path: "\(runDirectory)/\(name).h5", runName: config.name, config: try ConfigLoader.yaml(config), seed: config.seed,
                             recipe: trained.model.config.recipe, overwrite: true)
        let metrics = try evaluation.run(step: trained.step, log: log, samplesPath: "\(runDirectory)/\(name)-samples.png")
        try log.append("eval", step: trained.step, metrics)
        try log.flush()
        progress.say("\(config.name) at step \(trained.step)" + (changes.isEmpty ? "" : " with \(changes.joined(separator: " "))") + ":")
        for (name, value) in metrics { print("  \(name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(String(format: "%.6g", value))") }
        print("logged to \(runDirectory)/\(name).h5")
    }
}

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sample",
        abstract: "Generate images for a prompt with a trained run and write them as a PNG grid.")
    @Argument(help: "The run's directory (fusion train --out).") var runDirectory: String
    @Option(help: "The caption to draw.") var prompt: String
    @Option(help: "The PNG grid to write.") var out: String
    @Option(help: "How many images.") var count = 8
    @Option(help: "Classifier-free guidance scale (default: the run's eval.guidance_scale).") var guidance: Float?
    @Option(help: "Seed of the sampling noise.") var seed: UInt64 = 0
    @Flag(help: "Replace an existing PNG.") var overwrite = false

    func run() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        let trained = try TrainedRun(directory: runDirectory)
        var generator = RandomGenerator(seed: seed).split(key: "sample")
        let images: Tensor
        do {
            images = try trained.sample(prompt: prompt, count: count, guidanceScale: guidance ?? trained.config.eval.guidanceScale,
                                        generator: &generator)
        } catch let error as SequenceLengthError {
            let promptTokens = trained.data.tokenizer.encode(prompt).count
            let context = trained.model.config.model.contextLength
            throw RunFailure(description: "--prompt is \(promptTokens) tokens; with the image and its markers it needs \(error.documentLength) "
                                  + "positions, more than the \(context) of this run's context (recipe.model.context_length): "
                                  + "shorten the prompt to at most \(max(0, promptTokens - (error.documentLength - context))) tokens")
        }
        try PNG.writeGrid(images, columns: min(count, 8), scale: 3, labels: Array(repeating: prompt, count: count), to: out, overwrite: overwrite)
        print("wrote \(count) image(s) for \"\(prompt)\" to \(out)")
    }
}

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sweep",
        abstract: "Run a grid of configs as separate processes and merge them into one results file (re-running skips finished runs).",
        discussion: "Each run's output goes to runs/NAME/output.txt; the sweep shows runs done, each running run's step and loss, and its ETA (one line rewritten on a terminal, a line every 30 s to a file or pipe).")
    @Argument(help: "The sweep file (YAML: name, base, overrides, points, grid, parallel). With parallel: k, each run gets cores ÷ k threads (FUSION_THREADS) unless FUSION_THREADS is set.") var sweep: String
    @Option(help: "Directory of the sweep (default runs/sweeps/NAME).") var out: String?
    @Flag(help: "Resolve every run's config, print each run's recipe, seed, non-embedding parameters and training tokens, and stop.")
    var dryRun = false
    @Option(help: "Run only these points (comma-separated names, e.g. xs,s,m).") var points: String?
    @Option(help: "Replace a grid axis's values, KEY=V1,V2 (e.g. seed=0,1); repeatable. Run names stay those of the full sweep.")
    var grid: [String] = []
    @Flag(help: "Submit the pending runs as one Slurm job array (one task a run, each resuming its run) instead of running them here; with --dry-run, print the sbatch script.")
    var slurm = false
    @Flag(help: "Merge every finished run into results.h5 and say which runs are queued, failed or not started; runs nothing.")
    var merge = false
    @Option(help: "--slurm: the partition (sbatch --partition).") var partition: String?
    @Option(help: "--slurm: each task's time limit (sbatch --time, e.g. 2:00:00); the run saves a checkpoint 2 minutes before it.") var time: String?
    @Option(help: "--slurm: CPUs of each rank (sbatch --cpus-per-task); each rank then takes that many threads.") var cpusPerTask: Int?
    @Option(help: "--slurm: ranks of each run (sbatch --ntasks); above 1, a run trains data-parallel under mpirun.") var ntasks = 1
    @Option(help: "--slurm: the account to charge (sbatch --account).") var account: String?

    func validate() throws {
        if slurm && merge { throw ValidationError("--slurm submits and --merge only merges: give one of them") }
        let slurmOnly = [("--partition", partition != nil), ("--time", time != nil), ("--cpus-per-task", cpusPerTask != nil),
                         ("--ntasks", ntasks != 1), ("--account", account != nil)].filter(\.1).map(\.0)
        if !slurm && !slurmOnly.isEmpty { throw ValidationError("\(slurmOnly.joined(separator: ", ")) apply to --slurm submissions only: add --slurm") }
        if ntasks < 1 { throw ValidationError("--ntasks must be at least 1") }
        if let cpusPerTask, cpusPerTask < 1 { throw ValidationError("--cpus-per-task must be at least 1") }
    }

    func run() throws {
        let spec = try SweepSpec.load(sweep).narrowed(points: points.map { $0.split(separator: ",").map(String.init) }, grid: grid)
        let directory = out ?? "runs/sweeps/\(spec.name)"
        let executable = Bundle.main.executablePath ?? CommandLine.arguments[0]
        if slurm {
            let resources = SlurmSweep.Resources(partition: partition, time: time, cpusPerTask: cpusPerTask, ntasks: ntasks, account: account)
            try SlurmSweep.submit(spec, directory: directory, executable: executable, resources: resources, dryRun: dryRun)
            return
        }
        if merge { _ = try Sweep.plan(spec); try SlurmSweep.merge(spec, directory: directory); return }
        if dryRun { print(Sweep.describe(try Sweep.plan(spec))); return }
        try Sweep.run(spec, directory: directory, executable: executable)
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "report",
        abstract: "Write a markdown summary (one row per run, final metrics, FLOPs) and sample grids of a results file, and the same as one HTML page with plots and labelled samples.")
    @Argument(help: "A results file: a run's log.h5 or a sweep's results.h5.") var results: String
    @Option(help: "Directory for report.md, report.html and the grids (default: beside the results, report/).") var out: String?

    func run() throws {
        let directory = out ?? ((results as NSString).deletingLastPathComponent + "/report")
        let markdown = try Report.write(results: results, to: directory)
        print(markdown)
        print("\nwritten to \(directory)/report.md and \(directory)/report.html (one page: open it in a browser)")
    }
}

struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "analyze",
        abstract: "Fit scaling laws (log metric against log FLOPs, per recipe) to a results file and the FLOP parity ratios between recipes.",
        discussion: """
            For fd_fmnist and text_ppl the fit is log10(metric) = intercept + slope · log10(FLOPs counted), over the final \
            evaluation of each run; for t2i_accuracy and caption_accuracy it is the same fit of the error 1 − accuracy. \
            Where several seeds were run, per-seed fits give the mean ± std of the coefficients. Writes analysis.md and \
            analysis.h5 (never into the results file). Example: fusion analyze runs/sweeps/scaling/results.h5

            Several files are analysed together, each file's recipes labelled apart (chameleon-eps, \
            transfusion-flow), so that parity ratios compare across files: fusion analyze \
            runs/sweeps/scaling/results.h5 runs/sweeps/scaling-flow/results.h5 --labels eps,flow
            """)
    @Argument(help: "Results files: a sweep's results.h5 (or a run's log.h5); several are compared.") var results: [String]
    @Option(help: "With several files: a label for each, comma-separated (default: each file's directory name).") var labels: String?
    @Option(help: "Directory for analysis.md and analysis.h5 (default: beside the first results file, analysis/).") var out: String?

    func validate() throws {
        guard !results.isEmpty else { throw ValidationError("give at least one results file") }
    }

    func run() throws {
        let directory = out ?? ((results[0] as NSString).deletingLastPathComponent + "/analysis")
        let given = labels.map { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
        let (_, markdown) = try ScalingAnalysis.run(results: results, labels: given, to: directory)
        print(markdown)
        print("written to \(directory)/analysis.md and \(directory)/analysis.h5")
    }
}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data",
        abstract: "Install (scripts/setup) and verify the data sets: Fashion-MNIST and Shakespeare's plays.",
        subcommands: [Install.self, Export.self], defaultSubcommand: Install.self)

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install (scripts/setup) and verify the built-in data sets (the default).")
        @Flag(help: "Only verify; do not run scripts/setup.") var verifyOnly = false

        func run() throws {
            if !verifyOnly {
                guard FileManager.default.fileExists(atPath: "scripts/setup") else {
                    throw RunFailure(description: "scripts/setup not found: run fusion data from the repository root (or pass --verify-only)")
                }
                let setup = try ChildProcess.start("/bin/bash", ["scripts/setup"]).wait()
                guard setup.succeeded else { throw RunFailure(description: "scripts/setup failed (\(setup.description))") }
            }
            let train = try FashionMNIST.load(.train), test = try FashionMNIST.load(.test)
            print("Fashion-MNIST: \(train.count) training and \(test.count) test images of \(train.side)×\(train.side), labels 0–9: ok")
            let corpus = try ShakespeareCorpus.load()
            print("Shakespeare: \(corpus.trainingPlays.count) training plays (\(corpus.trainingText.utf8.count) bytes), "
                  + "\(corpus.heldOutPlays.count) held out (\(corpus.heldOutPlays.map(\.name).joined(separator: ", "))): ok")
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write Fashion-MNIST and the plays as a PNG folder with a JSONL manifest and a folder of .txt files.",
            discussion: """
                The formats data.images and data.text read, filled with the built-in data: a run from the \
                folders gives the same numbers as the built-in route with the same seed. Prints the \
                overrides that train from them.
                """)
        @Option(help: "Directory to write into (must not hold a manifest.jsonl yet).") var out: String
        @Option(help: "Training images to write (the first N).") var trainImages = 2_000
        @Option(help: "Test images to write (the first N).") var testImages = 200

        func run() throws {
            let written = try DataExport.fashionMNIST(to: out, trainImages: trainImages, testImages: testImages)
            print("wrote \(written.trainImages) training and \(written.testImages) test images with captions to \(written.manifest), "
                  + "and \(written.plays) plays to \(written.textFolder)")
            print("train from them with: fusion train CONFIG " + written.overrides.map { "\"\($0)\"" }.joined(separator: " "))
        }
    }
}

// The experiment harness: strict experiment configs on top of recipe presets, a training run that is
// killed and resumed ending with exactly the numbers of an uninterrupted one, sweeps and reports.
// The run tests train a tiny model on the real data (scripts/setup installs it) for a few steps.
import XCTest
import Foundation
import Fusion
@testable import Experiments

final class ExperimentConfigTests: XCTestCase {
    func testPresetSuppliesTheDefaultsOfEverySwitch() throws {
        let showo = try ExperimentConfig.load(file: nil, overrides: ["recipe=showo"])
        XCTAssertEqual(showo.recipe, RecipeConfig.showo)
        let changed = try ExperimentConfig.load(file: nil, overrides: ["recipe.recipe=transfusion", "recipe.qk_norm=true"].map {
            $0.replacingOccurrences(of: "recipe.qk_norm", with: "recipe.model.qk_norm")
        })
        var expected = RecipeConfig.transfusion
        expected.model.qkNorm = true
        XCTAssertEqual(changed.recipe, expected, "one switch changed, every other one the preset's")
    }

    func testRecipeShorthandInAFile() throws {
        let path = NSTemporaryDirectory() + "fusion-config-\(UUID().uuidString).yaml"
        try "name: x\nrecipe: transfusion\ntrain:\n  steps: 50\n  warmup_steps: 5\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let config = try ExperimentConfig.load(file: path, overrides: [])
        XCTAssertEqual(config.recipe.imageObjective, .diffusion)
        XCTAssertEqual(config.train.steps, 50)
    }

    func testErrorsNameTheKeyAndWhatIsValid() {
        func message(_ overrides: [String]) -> String {
            do { _ = try ExperimentConfig.load(file: nil, overrides: overrides); return "no error" } catch { return "\(error)" }
        }
        let unknown = message(["train.stepz=3"])
        XCTAssert(unknown.contains("train.stepz") && unknown.contains("steps"), unknown)
        let choice = message(["recipe.image_attention=sideways"])
        XCTAssert(choice.contains("recipe.image_attention") && choice.contains("causal, bidirectional"), choice)
        let preset = message(["recipe=dalle"])
        XCTAssert(preset.contains("chameleon, showo, transfusion"), preset)
        let warmup = message(["train.steps=10", "train.warmup_steps=10"])
        XCTAssert(warmup.contains("train.warmup_steps"), warmup)
        let spacing = message(["train.log_every=3", "train.checkpoint_every=10"])
        XCTAssert(spacing.contains("train.checkpoint_every"), spacing)
        let shape = message(["recipe.model.heads=3"])
        XCTAssert(shape.contains("heads"), shape)
    }

    func testResolvedConfigRoundTrips() throws {
        let config = try ExperimentConfig.load(file: "configs/small.yaml", overrides: ["recipe=showo", "train.learning_rate=0.0003"])
        let yaml = try ConfigLoader.yaml(config)
        XCTAssert(yaml.contains("learning_rate: 0.0003"), yaml)
        let again = try ConfigLoader.load(ExperimentConfig.self, yaml: yaml, defaults: config)
        XCTAssertEqual(again, config)
    }

    func testSweepPointsAreTheGrid() throws {
        let path = NSTemporaryDirectory() + "fusion-sweep-\(UUID().uuidString).yaml"
        try "name: s\nbase: configs/tiny.yaml\noverrides: [train.steps=30]\ngrid:\n  recipe.recipe: [chameleon, showo]\n  recipe.model.width: [32, 64]\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let spec = try SweepSpec.load(path)
        XCTAssertEqual(spec.points.map(\.name), ["s-chameleon-32", "s-chameleon-64", "s-showo-32", "s-showo-64"])
        XCTAssertEqual(spec.points[3].overrides, ["train.steps=30", "recipe.recipe=showo", "recipe.model.width=64"])
        try "name: s\nbase: configs/tiny.yaml\ngird: {}\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SweepSpec.load(path)) { XCTAssert("\($0)".contains("gird") && "\($0)".contains("grid"), "\($0)") }
    }
}

extension ExperimentConfigTests {
    func testTheReportSummarisesRunsThatDifferOnlyInTheirSeed() {
        func row(_ run: String, seed: Int64, qa: Double?) -> Report.Row {
            Report.Row(run: run, recipe: "llava", parameters: 1, nonEmbedding: 1, step: 1, flopsCounted: 10, flops6ND: 8,
                       metrics: qa.map { ["qa_accuracy": $0, "caption_accuracy": 0.5] } ?? ["caption_accuracy": 0.5], samplesGrid: nil, seed: seed)
        }
        // u-a over seeds 0 and 1; "u-b-0" alone is no group; "u-w-32" is named by a width, not its seed 0.
        let rows = [row("u-a-0", seed: 0, qa: 0.2), row("u-b-0", seed: 0, qa: 0.9), row("u-a-1", seed: 1, qa: 0.6),
                    row("u-w-32", seed: 0, qa: 0.1), row("u-w-64", seed: 0, qa: 0.3), row("u-c-0", seed: 0, qa: nil), row("u-c-1", seed: 1, qa: 0.4)]
        let groups = Report.seedGroups(rows)
        XCTAssertEqual(groups.map(\.setting), ["u-a", "u-c"])
        let markdown = Report.render(rows, source: "results.h5", commit: "abc")
        XCTAssert(markdown.contains("| u-a | 0, 1 | 10 | – | – | – | – | 0.5 (0.5–0.5) | 0.4 (0.2–0.6) |"), markdown)
        // A metric that one seed lacks is not averaged over the others.
        XCTAssert(markdown.contains("| u-c | 0, 1 | 10 | – | – | – | – | 0.5 (0.5–0.5) | – |"), markdown)
    }
}

final class ExperimentRunTests: XCTestCase {
    /// A tiny run: D 32, 2 layers, context 96, 12 steps of 2 sequences, checkpoints every 4 steps;
    /// `extra` overrides any of these.
    func tinyConfig(recipe: String, cache: String, extra: [String] = []) throws -> (ExperimentConfig, String) {
        let config = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: [
            "recipe=\(recipe)", "recipe.model.width=32", "recipe.model.layers=2", "recipe.model.heads=2",
            "recipe.model.context_length=96", "data.train_images=300", "data.cache_directory=\(cache)",
            "train.steps=12", "train.batch_size=2", "train.warmup_steps=2", "train.log_every=2", "train.checkpoint_every=4",
            "train.eval_every=6", "eval.images=8", "eval.captions=4", "eval.text_tokens=512", "eval.maskgit_steps=4", "eval.denoising_steps=4"] + extra)
        return (config, try ConfigLoader.yaml(config))
    }

    /// The time/ series of a run's log (step and seconds_PHASE).
    func phaseSeconds(_ path: String, run: String) throws -> [String: [Double]] {
        let file = try HDF5File.open(path)
        defer { try? file.close() }
        let group = try file.root.group("runs/\(run)/time")
        var result: [String: [Double]] = [:]
        for name in try group.childNames {
            result[name] = name == "step" ? try group.dataset(name).read(as: Int64.self).map(Double.init) : try group.dataset(name).read(as: Double.self)
        }
        return result
    }

    /// Every logged series except wall-clock rates, read back at full precision.
    func series(_ path: String, run: String) throws -> [String: [Double]] {
        let file = try HDF5File.open(path)
        var result: [String: [Double]] = [:]
        for section in ["train", "eval"] {
            let group = try file.root.group("runs/\(run)/\(section)")
            for name in try group.childNames where name != "tokens_per_second" {
                let dataset = try group.dataset(name)
                result["\(section)/\(name)"] = name == "step" ? try dataset.read(as: Int64.self).map(Double.init) : try dataset.read(as: Double.self)
            }
        }
        return result
    }

    func testKilledAndResumedRunEqualsAnUninterruptedOne() throws {
        for recipe in ["showo", "transfusion"] {
            let root = try temporaryDirectory()
            let (config, yaml) = try tinyConfig(recipe: recipe, cache: root + "/cache")
            try ExperimentRun.run(config, yaml: yaml, directory: root + "/whole", overwrite: false, resume: false)
            // Killed after step 7: its last checkpoint is step 4, and it had logged rows 6 and evaluated at 6.
            try ExperimentRun.run(config, yaml: yaml, directory: root + "/resumed", overwrite: false, resume: false, stopAfterStep: 7)
            XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/resumed/finished"))
            try ExperimentRun.run(config, yaml: yaml, directory: root + "/resumed", overwrite: false, resume: true)
            let whole = try series(root + "/whole/log.h5", run: config.name), resumed = try series(root + "/resumed/log.h5", run: config.name)
            XCTAssertEqual(Set(whole.keys), Set(resumed.keys))
            XCTAssertEqual(whole["train/step"], [2, 4, 6, 8, 10, 12])
            XCTAssertEqual(whole["eval/step"], [6, 12])
            for (name, values) in whole {
                XCTAssertEqual(values, resumed[name], "\(recipe): \(name) differs after resuming")
            }
            XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/resumed/finished"))
            // time/: a row per evaluation, every phase; the resumed run's rows are its second process's (the
            // killed one's row at 6 came after its checkpoint at 4), and each process counts its data set-up once.
            for directory in ["whole", "resumed"] {
                let times = try phaseSeconds(root + "/\(directory)/log.h5", run: config.name)
                XCTAssertEqual(times["step"], [6, 12], "\(recipe), \(directory)")
                XCTAssertEqual(Set(times.keys), Set(["step"] + PhaseTimes.phases.map { "seconds_\($0)" }))
                for phase in ["training", "eval_sampling", "eval_decoding", "eval_image_metrics", "eval_perplexity"] {
                    XCTAssert(times["seconds_\(phase)"]!.allSatisfy { $0 > 0 }, "\(recipe), \(directory): \(phase) \(times["seconds_\(phase)"]!)")
                }
                XCTAssertGreaterThan(times["seconds_data"]![0], 0)
                XCTAssertEqual(times["seconds_data"]![1], 0, "\(recipe), \(directory): the data are prepared once per process")
            }
            // Resuming with another config is refused.
            var other = config
            other.train.learningRate *= 2
            XCTAssertThrowsError(try ExperimentRun.run(other, yaml: try ConfigLoader.yaml(other), directory: root + "/resumed",
                                                       overwrite: false, resume: true)) { XCTAssert("\($0)".contains("config differs"), "\($0)") }
            // An existing run is not replaced unasked.
            XCTAssertThrowsError(try ExperimentRun.run(config, yaml: yaml, directory: root + "/whole", overwrite: false, resume: false)) {
                XCTAssert("\($0)".contains("--resume") && "\($0)".contains("--overwrite"), "\($0)")
            }
        }
    }

    func testEveryConnectorAndFusionTrainsEndToEnd() throws {
        // Each connector once, each fusion at least once, over the three recipes: a tiny run trains, logs
        // caption_accuracy beside the generation metrics, and keeps its understanding weights in the checkpoint.
        let root = try temporaryDirectory()
        let cases: [(recipe: String, fusion: String, connector: String)] = [
            ("chameleon", "sequence", "linear"), ("showo", "hybrid", "pixel_shuffle"), ("transfusion", "cross_attention", "resampler"),
            ("chameleon", "cross_attention", "qformer"), ("transfusion", "sequence", "mlp")]
        for (index, c) in cases.enumerated() {
            // Two of them with 2-D rotary image positions (a grid of codes, of latent patches and of pixel tokens).
            let rope = index == 0 || index == 4 ? ["recipe.model.image_rope=2d"] : []
            let (config, yaml) = try tinyConfig(recipe: c.recipe, cache: root + "/cache", extra: rope + [
                "recipe.understanding.encoder=patches", "recipe.understanding.fusion=\(c.fusion)",
                "recipe.understanding.connector=\(c.connector)", "recipe.understanding.queries=8"])
            let directory = root + "/run\(index)"
            try ExperimentRun.run(config, yaml: yaml, directory: directory, overwrite: false, resume: false)
            let logged = try series(directory + "/log.h5", run: config.name)
            XCTAssertEqual(logged["eval/caption_accuracy"]?.count, 2, "\(c)")
            XCTAssertNotNil(logged["eval/fd_fmnist"], "\(c)")
            XCTAssert(logged["train/loss"]!.allSatisfy(\.isFinite), "\(c)")
            let trained = try TrainedRun(directory: directory, log: { _ in })
            XCTAssertEqual(trained.model.config.understanding.fusion.rawValue, c.fusion)
            let names = trained.model.namedParameters().map(\.name)
            XCTAssert(names.contains { $0.hasPrefix("understanding.connector.") }, "\(c)")
            XCTAssertEqual(names.contains { $0.hasPrefix("core.crossAttention.") }, c.fusion != "sequence", "\(c)")
        }
        // A killed cross-attention run resumes to the same numbers (the gates and the resampler included).
        let (config, yaml) = try tinyConfig(recipe: "transfusion", cache: root + "/cache", extra: [
            "recipe.understanding.encoder=patches", "recipe.understanding.fusion=cross_attention", "recipe.understanding.connector=resampler",
            "recipe.understanding.queries=8"])
        try ExperimentRun.run(config, yaml: yaml, directory: root + "/resumed", overwrite: false, resume: false, stopAfterStep: 7)
        try ExperimentRun.run(config, yaml: yaml, directory: root + "/resumed", overwrite: false, resume: true)
        let whole = try series(root + "/run2/log.h5", run: config.name), resumed = try series(root + "/resumed/log.h5", run: config.name)
        XCTAssertEqual(Set(whole.keys), Set(resumed.keys))
        for (name, values) in whole { XCTAssertEqual(values, resumed[name], "\(name) differs after resuming") }
    }

    func testEveryUnderstandingPresetTrainsAndLogsTheUnderstandingMetrics() throws {
        // Each preset (on the committed ViT where it reads through one) trains a tiny run and logs caption,
        // QA and few-shot accuracy with their N, beside the generation metrics; its resolved config is its own.
        let root = try temporaryDirectory()
        for preset in RecipeConfig.understandingPresets {
            let (config, yaml) = try tinyConfig(recipe: preset, cache: root + "/cache", extra: [
                "data.qa_share=0.5", "eval.few_shot=[0, 2]", "recipe.understanding.queries=8", "recipe.model.context_length=256"])
            XCTAssertEqual(config.recipe.recipe, preset)
            var expected = try RecipeConfig.preset(named: preset).understanding
            expected.queries = 8
            XCTAssertEqual(config.recipe.understanding, expected, preset)
            try ExperimentRun.run(config, yaml: yaml, directory: root + "/\(preset)", overwrite: false, resume: false)
            let logged = try series(root + "/\(preset)/log.h5", run: config.name)
            for metric in ["caption_accuracy", "qa_accuracy", "qa_accuracy_n", "fewshot_accuracy_k0", "fewshot_accuracy_k2", "fd_fmnist"] {
                XCTAssertEqual(logged["eval/\(metric)"]?.count, 2, "\(preset): \(metric)")
            }
            XCTAssert(logged["train/loss"]!.allSatisfy(\.isFinite), preset)
            let names = try TrainedRun(directory: root + "/\(preset)", log: { _ in }).model.namedParameters().map(\.name)
            XCTAssertFalse(names.contains { $0.hasPrefix("understanding.encoder.") }, "\(preset): the ViT is frozen by default")
            let file = try HDF5File.open(root + "/\(preset)/log.h5")
            XCTAssertEqual(try file.root.group("runs/\(config.name)").hasAttribute("vision_encoder_sha256"), preset != "fuyu", preset)
        }
        // A trainable ViT is part of the model: the checkpoint holds it, a stage can train it alone, and
        // it moves off the committed weights; a killed run resumes to the same numbers.
        let (config, yaml) = try tinyConfig(recipe: "janus", cache: root + "/cache", extra: [
            "recipe.understanding.train_encoder=true", "train.stages=[{steps: 6, train: [encoder]}, {steps: 6, train: [all]}]"])
        try ExperimentRun.run(config, yaml: yaml, directory: root + "/trainable", overwrite: false, resume: false)
        try ExperimentRun.run(config, yaml: yaml, directory: root + "/resumed", overwrite: false, resume: false, stopAfterStep: 7)
        try ExperimentRun.run(config, yaml: yaml, directory: root + "/resumed", overwrite: false, resume: true)
        let whole = try series(root + "/trainable/log.h5", run: config.name), resumed = try series(root + "/resumed/log.h5", run: config.name)
        for (name, values) in whole { XCTAssertEqual(values, resumed[name], "\(name) differs after resuming") }
        let trained = try TrainedRun(directory: root + "/trainable", log: { _ in }).model.parametersByName()
        let committed = try VisionTransformer.load(from: config.autoencoder.vision, trainable: true).parametersByName()
        XCTAssertNotEqual(trained["understanding.encoder.patchWeight"]?.array, committed["patchWeight"]?.array)
    }

    func testStagesTrainWhatTheySayAndResumeAcrossABoundary() throws {
        let root = try temporaryDirectory()
        let understanding = ["recipe.understanding.encoder=patches", "recipe.understanding.fusion=cross_attention",
                             "recipe.understanding.connector=linear"]
        // LLaVA's first stage alone: only the connector and the cross-attention layers move.
        let (aligned, alignedYAML) = try tinyConfig(recipe: "chameleon", cache: root + "/cache", extra: understanding + [
            "train.stages=[{steps: 12, train: [connector, cross_attention], learning_rate: 0.01}]"])
        try ExperimentRun.run(aligned, yaml: alignedYAML, directory: root + "/aligned", overwrite: false, resume: false)
        let trained = try TrainedRun(directory: root + "/aligned", log: { _ in })
        var generator = RandomGenerator(seed: aligned.seed).split(key: "init")
        let initial = try FusionModel(config: trained.model.config, vocabulary: trained.data.vocabulary, generator: &generator)
        let start = initial.parametersByName()
        for (name, tensor) in trained.model.namedParameters() {
            let moved = tensor.array != start[name]!.array
            XCTAssertEqual(moved, name.hasPrefix("understanding.") || name.hasPrefix("core.crossAttention."), "\(name) moved: \(moved)")
        }
        let logged = try series(root + "/aligned/log.h5", run: aligned.name)
        XCTAssertEqual(logged["train/stage"], [1, 1, 1, 1, 1, 1])

        // Two stages, killed after step 7 (past the boundary at 6; its checkpoint is step 4, before it):
        // resumed, it ends as the uninterrupted run, stage by stage, rates included.
        let (staged, stagedYAML) = try tinyConfig(recipe: "chameleon", cache: root + "/cache", extra: understanding + [
            "train.stages=[{steps: 6, train: [connector], learning_rate: 0.01, warmup_steps: 0}, {steps: 6, train: [all], learning_rate: 0.002}]"])
        try ExperimentRun.run(staged, yaml: stagedYAML, directory: root + "/whole", overwrite: false, resume: false)
        try ExperimentRun.run(staged, yaml: stagedYAML, directory: root + "/resumed", overwrite: false, resume: false, stopAfterStep: 7)
        try ExperimentRun.run(staged, yaml: stagedYAML, directory: root + "/resumed", overwrite: false, resume: true)
        let whole = try series(root + "/whole/log.h5", run: staged.name), resumed = try series(root + "/resumed/log.h5", run: staged.name)
        for (name, values) in whole { XCTAssertEqual(values, resumed[name], "\(name) differs after resuming") }
        XCTAssertEqual(whole["train/stage"], [1, 1, 1, 2, 2, 2])
        let rates = whole["train/learning_rate"]!
        XCTAssertEqual(rates[0], 0.01 * (1 + cos(Double.pi * 1 / 6)) / 2 * 0.9 + 0.001, accuracy: 1e-6, "stage 1 at its step 1: cosine from 0.01 without warm-up")
        XCTAssertLessThan(rates[3], 0.002 + 1e-9)

        // Errors name the key and the fix.
        func message(_ overrides: [String]) -> String {
            do { _ = try tinyConfig(recipe: "chameleon", cache: root + "/cache", extra: overrides); return "no error" } catch { return "\(error)" }
        }
        XCTAssert(message(["train.stages=[{steps: 5, train: [all]}]"]).contains("add up to train.steps (12)"))
        XCTAssert(message(["train.stages=[{steps: 12, train: [all], lr: 0.1}]"]).contains("learning_rate"))
        XCTAssert(message(["train.stages=[{steps: 12, train: [vision]}]"]).contains("connector"))
        let (shared, sharedYAML) = try tinyConfig(recipe: "chameleon", cache: root + "/cache", extra: ["train.stages=[{steps: 12, train: [connector]}]"])
        XCTAssertThrowsError(try ExperimentRun.run(shared, yaml: sharedYAML, directory: root + "/shared", overwrite: false, resume: false)) {
            XCTAssert("\($0)".contains("recipe.understanding.encoder: patches"), "\($0)")
        }
    }

    func testQuestionsAndFewShotAreAskedAndScoredExactly() throws {
        let root = try temporaryDirectory()
        let (config, yaml) = try tinyConfig(recipe: "chameleon", cache: root + "/cache", extra: [
            "data.qa_share=1", "data.image_first_share=0.5", "recipe.understanding.encoder=patches",
            "recipe.understanding.fusion=cross_attention", "eval.few_shot=[0, 4]"])
        // With every image→text document a question, the training stream holds questions and their answers.
        let data = try MultimodalData(config: config, log: { _ in })
        var generator = RandomGenerator(seed: 0).split(key: "init")
        let model = try FusionModel(config: data.imageGeometry(of: config.recipe), vocabulary: data.vocabulary, generator: &generator)
        let documents = DocumentStream(data: data, model: model, config: config).documents(step: 0)
        let texts = documents.filter { $0.imageComesFirst() }.map { document in
            document.segments.compactMap { segment -> String? in if case .text(let ids) = segment { return data.tokenizer.decode(ids) } else { return nil } }.joined()
        }
        XCTAssertFalse(texts.isEmpty)
        for text in texts {
            XCTAssert(["what is it?", "is it dark or light?", "is it narrow or wide?", "is it small or large?"].contains { text.hasPrefix($0) }, text)
        }
        // The questions of a test image, against its label and measured properties.
        for index in 0..<data.test.count {
            let label = Int(data.test.labels![index])
            let questions = data.questions(data.test, index: index)
            XCTAssertEqual(questions.first, ImageQuestion(text: "what is it?", answers: Captions.nounForms[label]))
            let caption = Captions.caption(label: label, adjectives: Captions.adjectives(
                for: Captions.properties(of: Array(UnsafeBufferPointer(start: data.test.images.data + index * 1024, count: 1024)), side: 32), label: label), variant: 0)
            for question in questions.dropFirst() {  // each attribute answer is a word of the caption
                XCTAssert(Captions.words(in: caption).contains(Substring(question.answers[0])), "\(question) vs '\(caption)'")
            }
        }
        XCTAssert(ImageQuestion(text: "what is it?", answers: ["t-shirt", "top"]).accepts(" Top"))
        XCTAssertFalse(ImageQuestion(text: "what is it?", answers: ["t-shirt", "top"]).accepts("a top"), "exact answers only")

        try ExperimentRun.run(config, yaml: yaml, directory: root + "/run", overwrite: false, resume: false)
        let logged = try series(root + "/run/log.h5", run: config.name)
        let asked = (0..<4).reduce(0) { $0 + data.questions(data.test, index: $1).count }
        XCTAssertEqual(logged["eval/qa_accuracy_n"], [Double(asked), Double(asked)])
        XCTAssertEqual(logged["eval/qa_class_accuracy_n"], [4, 4], "one class question per image")
        XCTAssertLessThanOrEqual(logged["eval/qa_class_accuracy"]![1] * 4, logged["eval/qa_accuracy"]![1] * Double(asked) + 1e-9,
                                 "the class questions' right answers are among all right answers")
        for name in ["qa_accuracy", "fewshot_accuracy_k0", "fewshot_accuracy_k4"] {
            XCTAssert(logged["eval/" + name]?.allSatisfy { (0...1).contains($0) } ?? false, "\(name): \(logged["eval/" + name] ?? [])")
        }
        XCTAssertEqual(logged["eval/fewshot_accuracy_k4_n"], [4, 4])
        // In the sequence, four 64-code examples and the query do not fit a context of 96: not computed, and said.
        let (sequence, sequenceYAML) = try tinyConfig(recipe: "chameleon", cache: root + "/cache", extra: ["eval.few_shot=[0, 4]"])
        try sequenceYAML.write(toFile: root + "/sequence.yaml", atomically: true, encoding: .utf8)
        let trained = try FusionBinary.run(["train", root + "/sequence.yaml", "--out", root + "/sequence"])
        XCTAssertEqual(trained.status, 0, trained.output)
        XCTAssert(trained.output.contains("fewshot_accuracy_k4: not computed (a prompt of 4 examples and the query takes"), trained.output)
        let inSequence = try series(root + "/sequence/log.h5", run: sequence.name)
        XCTAssertNotNil(inSequence["eval/fewshot_accuracy_k0"])
        XCTAssertNil(inSequence["eval/fewshot_accuracy_k4"])
        // The report shows the understanding scores as columns.
        let markdown = try Report.write(results: root + "/run/log.h5", to: root + "/report")
        XCTAssert(markdown.contains("qa_accuracy") && markdown.contains("qa_class_accuracy") && markdown.contains("fewshot_accuracy_k4")
                  && !markdown.contains("qa_accuracy_n"), markdown)
        // Questions need labels with names.
        XCTAssertThrowsError(try MultimodalData(config: try tinyConfig(recipe: "chameleon", cache: root + "/cache", extra: [
            "data.qa_share=0.5", "data.images=\(try unlabelledManifest(root))"]).0, log: { _ in })) {
            XCTAssert("\($0)".contains("data.qa_share"), "\($0)")
        }
    }

    /// A manifest of 12 unlabelled 32×32 grey PNGs, 4 of them the test split.
    func unlabelledManifest(_ root: String) throws -> String {
        var lines: [String] = []
        for i in 0..<12 {
            let path = root + "/plain\(i).png"
            try PNG.write(Image8(width: 32, height: 32, channels: 1, pixels: [UInt8](repeating: UInt8(i * 20), count: 1024)), to: path, overwrite: false)
            lines.append("{\"image\": \"\(path)\", \"caption\": \"a plain square\", \"split\": \"\(i < 8 ? "train" : "test")\"}")
        }
        try lines.joined(separator: "\n").write(toFile: root + "/plain.jsonl", atomically: true, encoding: .utf8)
        return root + "/plain.jsonl"
    }

    func testReportHasARowPerRunWithItsFinalMetrics() throws {
        let root = try temporaryDirectory()
        let (config, yaml) = try tinyConfig(recipe: "chameleon", cache: root + "/cache")
        try ExperimentRun.run(config, yaml: yaml, directory: root + "/run", overwrite: false, resume: false)
        let markdown = try Report.write(results: root + "/run/log.h5", to: root + "/report")
        let row = markdown.split(separator: "\n").first { $0.hasPrefix("| tiny |") }
        XCTAssertNotNil(row, markdown)
        let fd = try series(root + "/run/log.h5", run: "tiny")["eval/fd_fmnist"]!.last!
        XCTAssert(row?.contains(String(format: "%.4g", fd)) ?? false, "report row \(row ?? "") lacks fd_fmnist \(fd)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/report/tiny-step12.png"))
        // Where the time went: the run's minutes per phase, summed over its time/ rows, and their total.
        let times = try phaseSeconds(root + "/run/log.h5", run: "tiny")
        let section = markdown.components(separatedBy: "## Where the time went").last ?? ""
        let timeRow = section.split(separator: "\n").first { $0.hasPrefix("| tiny |") }.map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        XCTAssert(markdown.contains("## Where the time went") && timeRow != nil, markdown)
        let total = times.filter { $0.key.hasPrefix("seconds_") }.values.reduce(0) { $0 + $1.reduce(0, +) }
        // Columns (split drops the empty cell before the first "|"): run, total, then the phases.
        XCTAssertEqual(Double(timeRow?[1] ?? "") ?? -1, total / 60, accuracy: 0.006, "\(timeRow ?? [])")
        XCTAssertEqual(timeRow?.count, 2 + times.filter { $0.key.hasPrefix("seconds_") && $0.value.reduce(0, +) > 0 }.count, "\(timeRow ?? [])")
        // The log records where its numbers came from.
        let file = try HDF5File.open(root + "/run/log.h5")
        let run = try file.root.group("runs/tiny")
        XCTAssertEqual(try run.stringAttribute("config"), yaml)
        XCTAssertEqual(try run.int64Attribute("seed"), 0)
        XCTAssertEqual(try file.root.stringAttribute("git_commit"), SourceRevision.gitCommit)
        XCTAssertTrue(try run.attributeNames.contains { $0.contains("sha256") })

        // The layout, read by an independent reader (h5dump from hdf5-tools).
        let header = try ChildProcess.run("/usr/bin/h5dump", ["-H", root + "/run/log.h5"], standardError: .inherited).text
        for path in ["GROUP \"runs\"", "GROUP \"tiny\"", "GROUP \"train\"", "GROUP \"eval\"", "GROUP \"samples\"",
                     "DATASET \"loss\"", "DATASET \"fd_fmnist\"", "DATASET \"step12\"", "ATTRIBUTE \"config\"", "ATTRIBUTE \"git_commit\""] {
            XCTAssert(header.contains(path), "h5dump -H shows no \(path)")
        }
        let (_, _, counted, estimate) = try ExperimentRun.flopsPerPosition(config)
        XCTAssertGreaterThan(counted, 0.5 * estimate, "counted FLOPs per position \(counted) vs 6·N \(estimate)")

        // The trained run opens again from its checkpoint (tokenizer included) and samples a prompt.
        let trained = try TrainedRun(directory: root + "/run", log: { _ in })
        XCTAssertEqual(trained.step, 12)
        XCTAssertEqual(trained.data.tokenizer.encode("a dark sneaker"), try TrainedRun(directory: root + "/run", log: { _ in }).data.tokenizer.encode("a dark sneaker"))
        var generator = RandomGenerator(seed: 1)
        let images = try trained.sample(prompt: "a dark sneaker", count: 2, guidanceScale: 2, generator: &generator)
        XCTAssertEqual(images.shape, [2, 1, 32, 32])
        XCTAssertTrue(images.array.allSatisfy { (0...1).contains($0) })

        // The same run through the command line, as a user goes on from train: eval, then sample.
        let evaluated = try FusionBinary.run(["eval", root + "/run"])
        XCTAssertEqual(evaluated.status, 0, evaluated.output)
        XCTAssert(evaluated.output.contains("fd_fmnist") && evaluated.output.contains("caption_accuracy"), evaluated.output)
        // Evaluation settings change without training again, each logged to its own file with its config.
        let fewerSteps = try FusionBinary.run(["eval", root + "/run", "eval.top_k=2", "eval.guidance_scale=0"])
        XCTAssertEqual(fewerSteps.status, 0, fewerSteps.output)
        let variant = try HDF5File.open(root + "/run/eval-step12-top_k2-guidance_scale0.h5")
        let logged = try variant.root.group("runs/\(config.name)").stringAttribute("config")
        XCTAssert(logged.contains("top_k: 2") && logged.contains("guidance_scale: 0"), logged)
        try variant.close()
        XCTAssert(FileManager.default.fileExists(atPath: root + "/run/eval-step12.h5"), "the plain evaluation's log is kept")
        let notEval = try FusionBinary.run(["eval", root + "/run", "train.steps=5"])
        XCTAssertNotEqual(notEval.status, 0)
        XCTAssert(notEval.output.contains("only eval.* keys"), notEval.output)
        let badValue = try FusionBinary.run(["eval", root + "/run", "eval.maskgit_steps=0"])
        XCTAssertNotEqual(badValue.status, 0)
        XCTAssert(badValue.output.contains("eval.maskgit_steps"), badValue.output)
        let sampled = try FusionBinary.run(["sample", root + "/run", "--prompt", "a light bag", "--count", "3", "--out", root + "/bag.png"])
        XCTAssertEqual(sampled.status, 0, sampled.output)
        let grid = try PNG.read(root + "/bag.png")
        XCTAssert(grid.height >= 32 && grid.width >= 3 * 32, "a grid of three 32×32 images, got \(grid.width)×\(grid.height)")
        let again = try FusionBinary.run(["sample", root + "/run", "--prompt", "a light bag", "--out", root + "/bag.png"])
        XCTAssertNotEqual(again.status, 0, "an existing PNG is not replaced unasked")
    }
}

final class SourceRevisionTests: XCTestCase {
    /// HEAD of this test file's checkout, asked of git directly.
    private func headOfThisCheckout() throws -> String {
        let head = try ChildProcess.run("/usr/bin/env", ["git", "-C", URL(fileURLWithPath: #filePath).deletingLastPathComponent().path,
                                                         "rev-parse", "HEAD"], standardError: .inherited).text
        return head.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testTheCommitIsTheBuildCheckoutsWhereverTheRunStarts() throws {
        let head = try headOfThisCheckout()
        XCTAssertEqual(head.count, 40, "this test needs a git checkout (CI clones one)")
        // Started from a directory outside any checkout, a run still names the code it was built from.
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("fusion-revision-\(getpid())").path
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        let saved = FileManager.default.currentDirectoryPath
        defer { _ = FileManager.default.changeCurrentDirectoryPath(saved); try? FileManager.default.removeItem(atPath: outside) }
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(outside))
        XCTAssertTrue(SourceRevision.gitCommit.hasPrefix(head), "\(SourceRevision.gitCommit) is not HEAD \(head)")
        XCTAssertTrue([head, head + "+dirty"].contains(SourceRevision.gitCommit))
        XCTAssertEqual(SourceRevision.commit(containing: outside), "unknown")
    }
}

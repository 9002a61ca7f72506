// Sweep files: named `points` (override sets that vary together, such as a model size and its token
// budget) crossed with the Cartesian `grid`, strict loading, every run's config resolved before anything
// starts; and the committed sweep files themselves (configs/scaling.yaml, configs/ablations/*.yaml).
import XCTest
import Foundation
import Fusion
@testable import Experiments

final class SweepTests: XCTestCase {
    func sweepFile(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "fusion-sweep-\(UUID().uuidString).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func message(_ text: String) throws -> String {
        let path = try sweepFile(text)
        do { _ = try SweepSpec.load(path); return "no error" } catch { return "\(error)" }
    }

    func testPointsAreCrossedWithTheGrid() throws {
        let path = try sweepFile("""
            name: sc
            base: configs/tiny.yaml
            overrides: [train.warmup_steps=2]
            points:
              - {name: xs, overrides: [recipe.model.width=32, train.steps=10]}
              - name: s
                overrides: [recipe.model.width=64, train.steps=20]
            grid:
              recipe.recipe: [chameleon, transfusion]
              seed: [0, 1]
            """)
        let spec = try SweepSpec.load(path)
        XCTAssertEqual(spec.namedPoints.map(\.name), ["xs", "s"])
        XCTAssertEqual(spec.points.map(\.name), ["sc-xs-chameleon-0", "sc-xs-chameleon-1", "sc-xs-transfusion-0", "sc-xs-transfusion-1",
                                                 "sc-s-chameleon-0", "sc-s-chameleon-1", "sc-s-transfusion-0", "sc-s-transfusion-1"])
        // The sweep's overrides, then the point's, then the grid's: a later one wins.
        XCTAssertEqual(spec.points[5].overrides, ["train.warmup_steps=2", "recipe.model.width=64", "train.steps=20", "recipe.recipe=chameleon", "seed=1"])
        let plans = try Sweep.plan(spec)
        XCTAssertEqual(plans[5].recipe, "chameleon")
        XCTAssertEqual(plans[5].seed, 1)
        XCTAssertEqual(plans[5].steps, 20)
        var expected = RecipeConfig.chameleon.model
        expected.width = 64
        XCTAssertEqual(plans[5].nonEmbeddingParameters, expected.nonEmbeddingParameterCount)
        let tiny = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: [])
        XCTAssertEqual(plans[5].tokens, 20 * tiny.train.batchSize * tiny.recipe.model.contextLength)
        XCTAssert(Sweep.describe(plans).contains("sc-s-chameleon-1 | chameleon | 1 | \(expected.nonEmbeddingParameterCount) | 20 |"),
                  Sweep.describe(plans))
    }

    func testRunsSideBySideShareTheCores() {
        let shared = { (parallel: Int, cores: Int) in Sweep.runEnvironment(["HOME": "/root"], parallel: parallel, cores: cores) }
        XCTAssertEqual(shared(1, 2)["FUSION_THREADS"], "2")
        XCTAssertEqual(shared(2, 2)["FUSION_THREADS"], "1")
        XCTAssertEqual(shared(3, 8)["FUSION_THREADS"], "2")
        XCTAssertEqual(shared(4, 2)["FUSION_THREADS"], "1", "never fewer than one thread")
        XCTAssertEqual(shared(2, 2)["HOME"], "/root", "the rest of the environment is passed on")
        XCTAssertEqual(Sweep.runEnvironment(["FUSION_THREADS": "3"], parallel: 2, cores: 2)["FUSION_THREADS"], "3", "the user's choice stands")
    }

    func testSideBySideRunsStartCostliestFirstAndOneAtATimeInOrder() {
        let plans = [("xs-a", 100, 10), ("xl-a", 900, 40), ("s-a", 300, 10), ("xl-b", 900, 40), ("m-a", 400, 30)].map {
            Sweep.Plan(name: $0.0, recipe: "chameleon", seed: 0, nonEmbeddingParameters: $0.1, steps: $0.2, tokens: $0.2 * 16)
        }
        XCTAssertEqual(Sweep.launchOrder(plans, parallel: 1), ["xs-a", "xl-a", "s-a", "xl-b", "m-a"])
        // 6·N·D: xl 900·640, m 400·480, s 300·160, xs 100·160; the two xl runs tie and keep the sweep's order.
        XCTAssertEqual(Sweep.launchOrder(plans, parallel: 2), ["xl-a", "xl-b", "m-a", "s-a", "xs-a"])
    }

    func testPointsAloneWithoutAGrid() throws {
        let spec = try SweepSpec.load(try sweepFile("name: p\nbase: configs/tiny.yaml\npoints:\n  - {name: a, overrides: [train.steps=10]}\n  - {name: b}\n"))
        XCTAssertEqual(spec.points.map(\.name), ["p-a", "p-b"])
        XCTAssertEqual(spec.points.map(\.overrides), [["train.steps=10"], []])
    }

    func testPointsAreLoadedStrictly() throws {
        let unknown = try message("name: p\nbase: configs/tiny.yaml\npoints:\n  - {name: a, overides: [train.steps=10]}\n")
        XCTAssert(unknown.contains("points[0]") && unknown.contains("overides") && unknown.contains("name, overrides"), unknown)
        let unnamed = try message("name: p\nbase: configs/tiny.yaml\npoints:\n  - {overrides: [train.steps=10]}\n")
        XCTAssert(unnamed.contains("points[0]") && unnamed.contains("name"), unnamed)
        let twice = try message("name: p\nbase: configs/tiny.yaml\npoints:\n  - {name: a}\n  - {name: a}\n")
        XCTAssert(twice.contains("points[1]") && twice.contains("'a'") && twice.contains("twice"), twice)
        let notOverride = try message("name: p\nbase: configs/tiny.yaml\npoints:\n  - {name: a, overrides: [train.steps]}\n")
        XCTAssert(notOverride.contains("points[0].overrides") && notOverride.contains("key=value"), notOverride)
        let scalar = try message("name: p\nbase: configs/tiny.yaml\npoints: xs\n")
        XCTAssert(scalar.contains("'points' must be a non-empty list"), scalar)
        let neither = try message("name: p\nbase: configs/tiny.yaml\n")
        XCTAssert(neither.contains("grid") && neither.contains("points"), neither)
        let topLevel = try message("name: p\nbase: configs/tiny.yaml\npoint: []\n")
        XCTAssert(topLevel.contains("'point'") && topLevel.contains("points"), topLevel)
    }

    func testNarrowingKeepsTheFullSweepsRunNames() throws {
        let spec = try SweepSpec.load(try sweepFile("""
            name: sc
            base: configs/tiny.yaml
            points:
              - {name: xs, overrides: [train.steps=10]}
              - {name: s, overrides: [train.steps=20]}
              - {name: m, overrides: [train.steps=30]}
            grid:
              recipe.recipe: [chameleon, showo]
              seed: [0]
            """))
        let narrowed = try spec.narrowed(points: ["xs", "m"], grid: ["seed=0,1"])
        XCTAssertEqual(narrowed.points.map(\.name), ["sc-xs-chameleon-0", "sc-xs-chameleon-1", "sc-xs-showo-0", "sc-xs-showo-1",
                                                    "sc-m-chameleon-0", "sc-m-chameleon-1", "sc-m-showo-0", "sc-m-showo-1"])
        XCTAssertEqual(narrowed.points[7].overrides, ["train.steps=30", "recipe.recipe=showo", "seed=1"])
        // Every run of the narrowed sweep is one the full sweep (with seed 1 added) would make, under the same name.
        let widened = try spec.narrowed(points: nil, grid: ["seed=0,1"])
        XCTAssert(Set(narrowed.points.map(\.name)).isSubset(of: Set(widened.points.map(\.name))))
        XCTAssertEqual(try spec.narrowed(points: nil, grid: []).points.map(\.name), spec.points.map(\.name))

        func message(_ body: () throws -> SweepSpec) -> String { do { _ = try body(); return "no error" } catch { return "\(error)" } }
        let unknownPoint = message { try spec.narrowed(points: ["xl"], grid: []) }
        XCTAssert(unknownPoint.contains("'xl'") && unknownPoint.contains("xs, s, m"), unknownPoint)
        let newAxis = message { try spec.narrowed(points: nil, grid: ["train.steps=5"]) }
        XCTAssert(newAxis.contains("no grid axis 'train.steps'") && newAxis.contains("recipe.recipe, seed"), newAxis)
        let noValues = message { try spec.narrowed(points: nil, grid: ["seed="]) }
        XCTAssert(noValues.contains("--grid seed") && noValues.contains("seed=0"), noValues)
        let noKey = message { try spec.narrowed(points: nil, grid: ["1,2"]) }
        XCTAssert(noKey.contains("KEY=VALUE"), noKey)
    }

    /// A narrower sweep into the same directory must not drop the runs an earlier one finished.
    func testMergeKeepsEveryFinishedRunOfTheDirectory() throws {
        let directory = NSTemporaryDirectory() + "fusion-sweep-merge-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (name, finished) in [("sc-xs-0", true), ("sc-xs-1", true), ("sc-l-0", true), ("sc-m-0", false)] {
            try FileManager.default.createDirectory(atPath: "\(directory)/runs/\(name)", withIntermediateDirectories: true)
            let log = try HDF5File.create("\(directory)/runs/\(name)/log.h5", overwrite: true)
            try log.root.createGroup("runs/\(name)").setAttribute("seed", name.hasSuffix("1") ? 1 : 0)
            try log.close()
            if finished { _ = FileManager.default.createFile(atPath: "\(directory)/runs/\(name)/finished", contents: Data()) }
        }
        try Sweep.merge(["sc-xs-1"], directory: directory)
        let results = try HDF5File.open("\(directory)/results.h5")
        XCTAssertEqual(Set(try results.root.group("runs").childNames), ["sc-xs-0", "sc-xs-1", "sc-l-0"], "the unfinished sc-m-0 is left out")
        XCTAssertEqual(try results.root.group("runs/sc-xs-1").int64Attribute("seed"), 1)
        try results.close()
    }

    /// `fusion sweep` end to end: three tiny runs, two side by side, each trained as its own process
    /// and merged; run again, it skips them all; a run that fails is named and the others still merge.
    func testALocalSweepTrainsEveryRunAndMergesThem() throws {
        let directory = NSTemporaryDirectory() + "fusion-sweep-local-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let overrides = RunFaultTests.tinyOverrides(recipe: "chameleon", cache: directory + "/cache").map { "\"\($0)\"" }
        let sweep = try sweepFile("""
            name: local
            base: configs/tiny.yaml
            parallel: 2
            overrides: [\(overrides.joined(separator: ", "))]
            points:
              - {name: a}
              - {name: b}
              - {name: bad, overrides: ["data.cache_directory=/dev/null/cache"]}
            """)
        let first = try FusionBinary.run(["sweep", sweep, "--out", directory + "/out"])
        XCTAssertNotEqual(first.status, 0, first.output)
        XCTAssertTrue(first.output.contains("sweep: local-a finished") && first.output.contains("sweep: local-b finished"), first.output)
        XCTAssertTrue(first.output.contains("1 run(s) failed: local-bad"), first.output)
        XCTAssertTrue(first.output.contains("2 finished run(s) merged"), first.output)
        let results = try HDF5File.open(directory + "/out/results.h5")
        XCTAssertEqual(try results.root.group("runs").childNames.sorted(), ["local-a", "local-b"])
        try results.close()

        let again = try FusionBinary.run(["sweep", sweep, "--out", directory + "/out"])
        XCTAssertTrue(again.output.contains("local-a finished already, skipped") && again.output.contains("1 to do"), again.output)
    }

    func testEveryRunIsResolvedBeforeAnyStarts() throws {
        let spec = try SweepSpec.load(try sweepFile("name: p\nbase: configs/tiny.yaml\npoints:\n  - {name: a}\n  - {name: b, overrides: [recipe.model.widht=64]}\n"))
        let directory = NSTemporaryDirectory() + "fusion-sweep-run-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        XCTAssertThrowsError(try Sweep.run(spec, directory: directory, executable: "/bin/false")) {
            XCTAssert("\($0)".contains("p-b") && "\($0)".contains("recipe.model.widht"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/runs/p-a"), "no run started before every config resolved")
    }

    /// configs/scaling.yaml: the three recipes × at least four sizes whose non-embedding parameters span at
    /// least 10×, a token budget that grows with size, one seed, the same data and evaluation for all.
    func testTheScalingSweepSpansTenfoldInParametersWithGrowingBudgets() throws {
        let spec = try SweepSpec.load("configs/scaling.yaml")
        let plans = try Sweep.plan(spec)
        XCTAssertGreaterThanOrEqual(spec.namedPoints.count, 4)
        XCTAssertEqual(Set(plans.map(\.recipe)), ["chameleon", "showo", "transfusion"])
        XCTAssertEqual(plans.count, spec.namedPoints.count * 3)
        for recipe in ["chameleon", "showo", "transfusion"] {
            let sizes = plans.filter { $0.recipe == recipe }
            XCTAssertEqual(sizes.count, spec.namedPoints.count)
            let parameters = sizes.map(\.nonEmbeddingParameters), tokens = sizes.map(\.tokens)
            XCTAssertGreaterThanOrEqual(Double(parameters.max()!) / Double(parameters.min()!), 10, "\(recipe): \(parameters)")
            // Listed smallest first, and a larger model trains on more tokens.
            XCTAssertEqual(parameters, parameters.sorted(), "\(recipe): points not in order of size")
            XCTAssertEqual(tokens, tokens.sorted(), "\(recipe): token budget does not grow with size")
            XCTAssertGreaterThan(tokens.last!, tokens.first!)
        }
        // Same data and evaluation sets for every run: only model size, budget, schedule and recipe vary.
        let configs = try spec.points.map { try ExperimentConfig.load(file: spec.base, overrides: $0.overrides) }
        for config in configs {
            XCTAssertEqual(config.data, configs[0].data)
            XCTAssertEqual(config.eval, configs[0].eval)
            XCTAssertEqual(config.tokenizer, configs[0].tokenizer)
            XCTAssertEqual(config.autoencoder, configs[0].autoencoder)
        }
    }

    /// configs/scaling-flow.yaml is configs/scaling.yaml's Transfusion runs with only the objective (and
    /// its sampler) changed, and the budget check resolves; so their numbers compare with the sweep's.
    func testTheFlowSweepAndTheBudgetCheckFollowTheScalingProtocol() throws {
        let scaling = try SweepSpec.load("configs/scaling.yaml"), flow = try SweepSpec.load("configs/scaling-flow.yaml")
        let transfusion = scaling.points.filter { $0.name.hasSuffix("-transfusion-0") }
        XCTAssertEqual(flow.points.count, transfusion.count)
        for (a, b) in zip(transfusion, flow.points) {
            var expected = try ExperimentConfig.load(file: scaling.base, overrides: a.overrides)
            expected.recipe.diffusionObjective = .flow
            expected.eval.diffusionSampler = .euler
            XCTAssertEqual(try ExperimentConfig.load(file: flow.base, overrides: b.overrides), expected, b.name)
        }
        let budget = try Sweep.plan(SweepSpec.load("configs/scaling-budget.yaml"))
        XCTAssertEqual(budget.map(\.recipe), ["transfusion", "transfusion"])
        XCTAssertEqual(budget.map(\.steps), [1200, 1200])
    }

    func testEveryAblationSweepResolves() throws {
        let directory = "configs/ablations"
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 6, "\(files)")
        for file in files {
            let spec = try SweepSpec.load("\(directory)/\(file)")
            let plans = try Sweep.plan(spec)
            XCTAssertGreaterThanOrEqual(plans.count, 2, "\(file): an ablation compares at least two runs")
            XCTAssertEqual(Set(plans.map(\.name)).count, plans.count, "\(file): run names repeat")
            let configs = try spec.points.map { try ExperimentConfig.load(file: spec.base, overrides: $0.overrides) }
            let resolved = try configs.map { try ConfigLoader.yaml($0) }
            XCTAssertEqual(Set(resolved).count, resolved.count, "\(file): two runs with the same resolved config")
        }
    }

    func testRunsThatDisagreeOnTheEvaluationSetsAreRefused() throws {
        let path = NSTemporaryDirectory() + "fusion-sweep-eval-\(UUID().uuidString).yaml"
        try "name: e\nbase: configs/tiny.yaml\ngrid:\n  eval.images: [20, 40]\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try Sweep.plan(SweepSpec.load(path))) { error in
            XCTAssert("\(error)".contains("evaluation sets") && "\(error)".contains("eval.images=40"), "\(error)")
        }
    }
}

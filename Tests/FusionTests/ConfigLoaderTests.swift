// Strict configs: every error path names the full dotted key, where the value came from, and the valid
// keys; defaults fill what a file leaves out; overrides apply after the file; the resolved YAML decodes
// back to the same struct. The `fusion reference train` wiring is checked through the built executable.
import XCTest
import Foundation
@testable import Experiments

/// A config with the shapes real ones have: a choice, a section with a range, a float, a list.
private struct SampleConfig: Configuration, Equatable {
    enum Recipe: String, ConfigChoice { case chameleon, showo, transfusion }

    struct Model: Codable, Equatable, ConfigValidatable {
        var layers = 4
        var dim = 64
        var qkNorm = false
        enum CodingKeys: String, CodingKey { case layers, dim, qkNorm = "qk_norm" }
        func validate() throws { try require(layers >= 1, "layers", layers, "must be at least 1") }
    }

    struct Train: Codable, Equatable, ConfigValidatable {
        var lr: Double = 1e-3
        var steps = 100
        var name = "run"
        func validate() throws { try require(lr > 0, "lr", lr, "must be positive") }
    }

    var recipe = Recipe.chameleon
    var seed: UInt64 = 0
    var model = Model()
    var train = Train()
    var tags = ["a", "b"]

    init() {}

    func validate() throws {
        try validate(section: "model", model)
        try validate(section: "train", train)
    }
}

final class ConfigLoaderTests: XCTestCase {
    private func load(_ yaml: String?, _ overrides: [String] = []) throws -> SampleConfig {
        try ConfigLoader.load(SampleConfig.self, yaml: yaml, source: "cfg.yaml", overrides: overrides)
    }

    /// The ConfigError `body` throws (failing the test if it throws none, or another kind).
    private func configError(_ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        do {
            let value = try body()
            XCTFail("expected a ConfigError, got \(value)", file: file, line: line)
        } catch let error as ConfigError {
            return error
        } catch {
            XCTFail("expected a ConfigError, got \(type(of: error)): \(error)", file: file, line: line)
        }
        return nil
    }

    // MARK: Resolution

    func testDefaultsPartialFileAndOverrides() throws {
        XCTAssertEqual(try load(nil), SampleConfig())
        XCTAssertEqual(try load(""), SampleConfig(), "an empty file is all defaults")
        XCTAssertEqual(try load("# only a comment\n"), SampleConfig())

        let partial = try load("model:\n  layers: 6\n")
        var expected = SampleConfig()
        expected.model.layers = 6
        XCTAssertEqual(partial, expected, "a partial file keeps the other defaults, in its section too")

        let overridden = try load("model:\n  layers: 6\ntrain:\n  lr: 0.01\n",
                                  ["recipe=showo", "train.lr=3e-4", "model.qk_norm=true", "tags=[x, y, z]",
                                   "train.name=long run", "model.layers=8"])
        expected.recipe = .showo
        expected.train.lr = 3e-4
        expected.model.qkNorm = true
        expected.model.layers = 8
        expected.tags = ["x", "y", "z"]
        expected.train.name = "long run"
        XCTAssertEqual(overridden, expected, "overrides apply after the file, last one wins")

        // A whole section as an override value is merged strictly too.
        let section = try load(nil, ["model={layers: 2, dim: 32}"])
        XCTAssertEqual(section.model, SampleConfig.Model(layers: 2, dim: 32, qkNorm: false))
    }

    func testRoundTripThroughResolvedYAML() throws {
        let config = try load("train:\n  lr: 3.0e-4\n  name: 'a: quoted name'\n", ["recipe=transfusion", "seed=18446744073709551615", "tags=[]"])
        let text = try ConfigLoader.yaml(config)
        XCTAssertEqual(try load(text), config, "decoding the resolved YAML gives the same struct:\n\(text)")
        XCTAssertTrue(text.hasPrefix("recipe: transfusion\nseed: 18446744073709551615\nmodel:\n"), "keys in declaration order:\n\(text)")

        var training = ReferenceTrainingConfig()
        training.learningRate = 3e-4
        training.weightDecay = 0.1
        let trainingText = training.yaml
        XCTAssertEqual(try ConfigLoader.load(ReferenceTrainingConfig.self, yaml: trainingText), training, trainingText)
        XCTAssertTrue(trainingText.contains("batch_size: 128"), trainingText)
        // Reals in their shortest form, not Yams's 15-digit scientific ("3e-4", "1e+0").
        XCTAssertTrue(trainingText.contains("learning_rate: 0.0003\n") && trainingText.contains("gradient_clip: 1.0\n")
                      && trainingText.contains("weight_decay: 0.1\n"), trainingText)
        XCTAssertTrue(text.contains("lr: 0.0003\n"), text)
    }

    // MARK: Errors

    func testUnknownTopLevelKeyNamesItWithSuggestions() {
        let error = configError { try self.load("seed: 3\nmodle:\n  layers: 2\n") }
        XCTAssertEqual(error, .unknownKey(key: "modle", origin: "cfg.yaml:2:1", validKeys: ["recipe", "seed", "model", "train", "tags"]))
        let message = error.map { "\($0)" } ?? ""
        XCTAssertTrue(message.contains("valid keys at the top level: recipe, seed, model, train, tags"), message)
        XCTAssertTrue(message.contains("did you mean 'model'?"), message)
    }

    func testUnknownNestedKeyNamesTheDottedKey() {
        let error = configError { try self.load("model:\n  dim: 32\n  layres: 2\n") }
        XCTAssertEqual(error, .unknownKey(key: "model.layres", origin: "cfg.yaml:3:3", validKeys: ["layers", "dim", "qk_norm"]))
        let message = error.map { "\($0)" } ?? ""
        XCTAssertTrue(message.contains("unknown config key 'model.layres'"), message)
        XCTAssertTrue(message.contains("valid keys under 'model': layers, dim, qk_norm (did you mean 'model.layers'?)"), message)
        // Far from every valid key: no suggestion.
        let far = configError { try self.load("train:\n  optimizer: sgd\n") }.map { "\($0)" } ?? ""
        XCTAssertTrue(far.contains("'train.optimizer'") && !far.contains("did you mean"), far)
    }

    func testWrongTypeNamesKeyOriginExpectationAndValue() {
        XCTAssertEqual(configError { try self.load("train:\n  lr: fast\n") },
                       .wrongType(key: "train.lr", origin: "cfg.yaml:2:7", expected: "a number", found: "'fast'"))
        XCTAssertEqual(configError { try self.load("model:\n  layers: 2.5\n") },
                       .wrongType(key: "model.layers", origin: "cfg.yaml:2:11", expected: "an integer", found: "'2.5'"))
        XCTAssertEqual(configError { try self.load("seed: -1\n") },
                       .wrongType(key: "seed", origin: "cfg.yaml:1:7", expected: "a non-negative integer", found: "'-1'"))
        XCTAssertEqual(configError { try self.load("model:\n  qk_norm:\n") },
                       .wrongType(key: "model.qk_norm", origin: "cfg.yaml:2:11", expected: "true or false", found: "null"))
        XCTAssertEqual(configError { try self.load("model: 3\n") },
                       .wrongType(key: "model", origin: "cfg.yaml:1:8", expected: "a mapping with keys layers, dim, qk_norm", found: "'3'"))
        XCTAssertEqual(configError { try self.load("- a\n- b\n") },
                       .wrongType(key: "(top level)", origin: "cfg.yaml:1:1", expected: "a mapping with keys recipe, seed, model, train, tags", found: "a sequence"))
        XCTAssertEqual(configError { try self.load("recipe: showoo\n") },
                       .wrongType(key: "recipe", origin: "cfg.yaml:1:9", expected: "one of chameleon, showo, transfusion", found: "'showoo'"))
        XCTAssertEqual(configError { try self.load("tags: {a: 1}\n") },
                       .wrongType(key: "tags", origin: "cfg.yaml:1:7", expected: "a sequence", found: "a mapping"))
        // From an override, the origin is the override.
        let override = configError { try self.load(nil, ["model.layers=six"]) }
        XCTAssertEqual(override, .wrongType(key: "model.layers", origin: "override 'model.layers=six'", expected: "an integer", found: "'six'"))
        XCTAssertEqual(override.map { "\($0)" }, "override 'model.layers=six': config key 'model.layers' expects an integer, found 'six'")
    }

    func testOutOfRangeNamesTheDottedKeyAndTheRule() {
        let error = configError { try self.load("model:\n  layers: 0\n") }
        XCTAssertEqual(error, .outOfRange(key: "model.layers", value: "0", requirement: "must be at least 1"))
        XCTAssertEqual(error.map { "\($0)" }, "config key 'model.layers' is 0, but it must be at least 1")
        XCTAssertEqual(configError { try self.load(nil, ["train.lr=-1e-3"]) },
                       .outOfRange(key: "train.lr", value: "-0.001", requirement: "must be positive"))
        XCTAssertEqual(configError { try ConfigLoader.load(ReferenceTrainingConfig.self, yaml: "batch_size: 0") },
                       .outOfRange(key: "batch_size", value: "0", requirement: "must be between 1 and 60000 (the training set)"))
    }

    func testOverrideOfAMissingKeyListsTheValidOnes() {
        let error = configError { try self.load(nil, ["model.layrs=6"]) }
        XCTAssertEqual(error, .overrideOfMissingKey(override: "model.layrs=6", key: "model.layrs", validKeys: ["layers", "dim", "qk_norm"]))
        let message = error.map { "\($0)" } ?? ""
        XCTAssertTrue(message.contains("valid keys under 'model': layers, dim, qk_norm (did you mean 'model.layers'?)"), message)
        XCTAssertEqual(configError { try self.load(nil, ["recpe=showo"]) },
                       .overrideOfMissingKey(override: "recpe=showo", key: "recpe", validKeys: ["recipe", "seed", "model", "train", "tags"]))
        XCTAssertEqual(configError { try self.load(nil, ["seed.x=1"]) },
                       .overrideOfMissingKey(override: "seed.x=1", key: "seed.x", validKeys: []))
    }

    func testMalformedOverrides() {
        for text in ["model.layers", "=3", "model..layers=3", ".seed=1"] {
            let error = configError { try self.load(nil, [text]) }
            XCTAssertEqual(error, .malformedOverride(text), text)
            XCTAssertTrue((error.map { "\($0)" } ?? "").contains("KEY=VALUE"))
        }
        // A value that is not YAML names the override.
        let error = configError { try self.load(nil, ["tags=[a, b"]) }
        guard case .malformedYAML(let source, _, _, _)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(source, "override 'tags=[a, b'")
    }

    func testMalformedYAMLNamesFileAndLine() throws {
        let cases: [(String, Int)] = [
            ("seed: 1\nmodel:\n  layers: [1, 2\ntrain:\n  lr: 1\n", 4),   // unclosed flow sequence
            ("seed: 1\nmodel:\n\tlayers: 2\n", 3),                         // a tab for indentation
            ("seed: 1\nseed: 2\n", 1),                                     // duplicate key
        ]
        for (text, expectedLine) in cases {
            let error = configError { try self.load(text) }
            guard case .malformedYAML(let source, let line, _, let problem)? = error else {
                XCTFail("\(text.debugDescription): \(String(describing: error))"); continue
            }
            XCTAssertEqual(source, "cfg.yaml")
            XCTAssertEqual(line, expectedLine, "\(text.debugDescription): \(problem)")
            XCTAssertTrue((error.map { "\($0)" } ?? "").hasPrefix("cfg.yaml:\(expectedLine):"), "\(String(describing: error))")
        }
    }

    func testFilesAreReadAndAMissingFileIsNamed() throws {
        let path = NSTemporaryDirectory() + "fusion-config-\(UUID().uuidString).yaml"
        try "model:\n  dim: 128\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(try ConfigLoader.load(SampleConfig.self, file: path).model.dim, 128)
        let unknown = configError { try ConfigLoader.load(SampleConfig.self, file: path, overrides: ["model.width=3"]) }
        XCTAssertEqual(unknown, .overrideOfMissingKey(override: "model.width=3", key: "model.width", validKeys: ["layers", "dim", "qk_norm"]))
        try "model:\n  dimm: 128\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(configError { try ConfigLoader.load(SampleConfig.self, file: path) },
                       .unknownKey(key: "model.dimm", origin: "\(path):2:3", validKeys: ["layers", "dim", "qk_norm"]))
        let missing = configError { try ConfigLoader.load(SampleConfig.self, file: path + ".absent") }
        guard case .unreadableFile(let named, _)? = missing else { return XCTFail("\(String(describing: missing))") }
        XCTAssertEqual(named, path + ".absent")
    }

    // MARK: The command

    private func fusion(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let result = try FusionBinary.run(arguments)
        return (result.status, result.output)
    }

    func testReferenceTrainResolvesFileOverridesAndOptions() throws {
        let path = NSTemporaryDirectory() + "fusion-config-\(UUID().uuidString).yaml"
        try "epochs: 2\nbatch_size: 64\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try fusion(["reference", "train", "--config", path, "learning_rate=1e-3", "--seed", "7", "--print-config"])
        XCTAssertEqual(status, 0, output)
        var expected = ReferenceTrainingConfig()
        expected.epochs = 2
        expected.batchSize = 64
        expected.learningRate = 1e-3
        expected.seed = 7
        XCTAssertEqual(try ConfigLoader.load(ReferenceTrainingConfig.self, yaml: output), expected, output)

        let (badStatus, badOutput) = try fusion(["reference", "train", "--print-config", "learnig_rate=1e-3"])
        XCTAssertNotEqual(badStatus, 0)
        XCTAssertTrue(badOutput.contains("no key 'learnig_rate'") && badOutput.contains("did you mean 'learning_rate'?"), badOutput)
    }
}

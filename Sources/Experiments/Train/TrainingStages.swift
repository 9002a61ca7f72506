// Training stages: a run as a list of phases, each training some modules of the model at its own
// learning rate, so that multi-stage recipes are configs rather than code:
//   LLaVA (Liu et al. 2023, §4.2): pre-training for feature alignment trains the connector alone, then
//     fine-tuning trains the connector and the LM:   [{steps: …, train: [connector]}, {steps: …, train: [all]}]
//   NVLM-X (Dai et al. 2024, §4.2): the LM frozen, the cross-attention layers and the connector trained.
//   Janus (Wu et al. 2024, §3.2): adaptors first, then everything but the encoders, then everything.
//
//   train:
//     steps: 3000                      # the stages' steps add up to it
//     stages:
//       - {steps: 1000, train: [connector], learning_rate: 0.001}
//       - {steps: 2000, train: [all], learning_rate: 0.0002, warmup_steps: 50}
//
// Each stage runs its own warm-up and cosine decay over its steps, from its learning rate (default
// train.learning_rate) to train.final_learning_rate_ratio of it, as separate training runs would; its
// warm-up defaults to train.warmup_steps, cut to half the stage if longer. A frozen module's gradients
// are dropped before the all-reduce and the clipping, and AdamW neither updates it nor counts the
// step for it (`AdamW.step(freezing:)`). The stage is a function of the step, so a resumed run is in
// the stage it was in. Without stages, one stage trains everything (the schedule is train's own).
import Fusion

/// One stage of `train.stages`.
struct TrainingStage: Codable, Equatable {
    /// A part of the model, by its parameters' names.
    enum Module: String, ConfigurationChoice {
        /// Every parameter.
        case all
        /// The language model: the core's embeddings, blocks, norms and output head.
        case lm
        /// The gated cross-attention layers (recipe.understanding.fusion: cross_attention or hybrid).
        case crossAttention = "cross_attention"
        /// The understanding encoder's connector (recipe.understanding.encoder other than shared).
        case connector
        /// The ViT itself (recipe.understanding.encoder: vit with train_encoder: true).
        case encoder
        /// Transfusion's latent patch encoder and decoder with the timestep embedding.
        case patchCodec = "patch_codec"

        /// Whether the parameter named `name` (`Module.namedParameters`) belongs to this part.
        func contains(_ name: String) -> Bool {
            switch self {
            case .all: return true
            case .crossAttention: return name.hasPrefix("core.crossAttention.")
            case .lm: return name.hasPrefix("core.") && !name.hasPrefix("core.crossAttention.")
            case .connector: return name.hasPrefix("understanding.") && !name.hasPrefix("understanding.encoder.")
            case .encoder: return name.hasPrefix("understanding.encoder.")
            case .patchCodec: return name.hasPrefix("latentPatches.")
            }
        }
    }

    var steps: Int
    var train: [Module]
    /// Peak learning rate of the stage; nil: train.learning_rate.
    var learningRate: Float?
    /// Warm-up steps of the stage; nil: train.warmup_steps, at most half the stage.
    var warmupSteps: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case steps, train, learningRate = "learning_rate", warmupSteps = "warmup_steps"
    }

    init(steps: Int, train: [Module], learningRate: Float? = nil, warmupSteps: Int? = nil) {
        self.steps = steps
        self.train = train
        self.learningRate = learningRate
        self.warmupSteps = warmupSteps
    }

    /// Strict, as every other key of a config: a key a stage does not have is an error listing those it has.
    init(from decoder: Decoder) throws {
        struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        let valid = CodingKeys.allCases.map(\.rawValue)
        for key in try decoder.container(keyedBy: AnyKey.self).allKeys where !valid.contains(key.stringValue) {
            throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: decoder.codingPath + [key],
                debugDescription: "a stage has no key '\(key.stringValue)'; its keys are \(valid.joined(separator: ", "))"))
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        steps = try container.decode(Int.self, forKey: .steps)
        train = try container.decode([Module].self, forKey: .train)
        learningRate = try container.decodeIfPresent(Float.self, forKey: .learningRate)
        warmupSteps = try container.decodeIfPresent(Int.self, forKey: .warmupSteps)
    }
}

/// The stages of a run resolved against its train config and its model's parameters: which stage a step
/// is in, its learning rate and which parameters it leaves frozen.
struct TrainingPlan {
    struct Stage {
        let start: Int
        let stage: TrainingStage
        let schedule: WarmupCosineSchedule
        /// The parameter names this stage does not train.
        let frozen: Set<String>
    }
    let stages: [Stage]
    /// Whether the config lists stages (and the log records which one each row is in).
    let isStaged: Bool

    /// Throws when a stage names a module the model has no parameters of (`parameters`: every name).
    init(_ train: ExperimentConfig.TrainConfig, parameters: [String]) throws {
        let ratio = train.finalLearningRateRatio
        isStaged = !train.stages.isEmpty
        let listed = isStaged ? train.stages : [TrainingStage(steps: train.steps, train: [.all], learningRate: train.learningRate,
                                                              warmupSteps: train.warmupSteps)]
        var start = 0, resolved: [Stage] = []
        for (index, stage) in listed.enumerated() {
            try Self.check(stage, number: index + 1, parameters: parameters)
            let peak = stage.learningRate ?? train.learningRate
            let warmup = stage.warmupSteps ?? min(train.warmupSteps, stage.steps / 2)
            resolved.append(Stage(start: start, stage: stage,
                                  schedule: WarmupCosineSchedule(peak: peak, warmupSteps: warmup, totalSteps: stage.steps, floor: peak * ratio),
                                  frozen: Set(parameters.filter { name in !stage.train.contains { $0.contains(name) } })))
            start += stage.steps
        }
        stages = resolved
    }

    /// The stage of 0-based step `step` (the last one past the end) and its index.
    func stage(at step: Int) -> (index: Int, stage: Stage) {
        let index = stages.lastIndex { $0.start <= step } ?? 0
        return (index, stages[index])
    }

    /// The learning rate of step `step`.
    func learningRate(at step: Int) -> Float {
        let (_, current) = stage(at: step)
        return current.schedule.rate(at: step - current.start)
    }

    /// The parameter names step `step` leaves frozen.
    func frozen(at step: Int) -> Set<String> { stage(at: step).stage.frozen }

    /// Every module a stage names must have parameters in the model.
    private static func check(_ stage: TrainingStage, number: Int, parameters: [String]) throws {
        for module in stage.train where !parameters.contains(where: module.contains) {
            throw ConfigError.outOfRange(key: "train.stages", value: "stage \(number) trains \(module.rawValue)",
                requirement: "must name modules this model has: \(TrainingStage.Module.allCases.filter { m in parameters.contains(where: m.contains) }.map(\.rawValue).joined(separator: ", "))"
                    + (module == .connector ? " (a connector needs recipe.understanding.encoder: patches or vit)" : "")
                    + (module == .encoder ? " (a trained encoder needs recipe.understanding.encoder: vit and train_encoder: true)" : "")
                    + (module == .crossAttention ? " (cross-attention layers need recipe.understanding.fusion: cross_attention or hybrid)" : ""))
        }
    }
}

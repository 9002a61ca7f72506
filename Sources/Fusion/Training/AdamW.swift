// AdamW: Adam with decoupled weight decay, Loshchilov & Hutter, "Decoupled Weight Decay
// Regularization" (ICLR 2019, arXiv 1711.05101), Algorithm 2, in the parameterisation of PyTorch's
// `torch.optim.AdamW` (the one GPT-style recipes quote, e.g. weight decay 0.1, β₂ = 0.95):
//
//   m ← β₁·m + (1 − β₁)·g                  v ← β₂·v + (1 − β₂)·g²
//   m̂ = m / (1 − β₁ᵗ)                      v̂ = v / (1 − β₂ᵗ)
//   θ ← θ − lr·( m̂ / (√v̂ + ε) + λ·θ )      (λ·θ only for parameters the decay filter selects)
//
// The decay term uses θ before the step and never passes through m, v or the √v̂ normalisation:
// that is the "decoupling" (with Adam + L2, λθ would be added to g and rescaled per coordinate).
// Relation to the paper's notation: its α is the peak learning rate and ηₜ the schedule multiplier,
// so lr = α·ηₜ, and its λ equals α·λ here (PyTorch multiplies the decay by lr).
//
// Each tensor is updated in one fused pass (m, v, bias correction, decay, update), split over the
// cores for large tensors; the bias corrections are computed once per step count in Double.
//
// A frozen parameter (`step(freezing:)`, a training stage that leaves its module alone) is not updated
// and does not count the step: its t is the steps it was trained, as for a parameter PyTorch's optimiser
// first sees in a later stage, so its first update after a stage boundary gets the full bias correction.

import Foundation

public final class AdamW {
    /// One optimised tensor with its moment buffers.
    struct Slot {
        let name: String
        let parameter: Tensor
        let m: Tensor  // first moment, parameter's shape
        let v: Tensor  // second moment, parameter's shape
        let decays: Bool
    }

    var slots: [Slot]

    /// The learning rate of the next `step()`; set it before each step from a schedule.
    public var learningRate: Float
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    /// λ: each step shrinks decayed parameters by the factor (1 − learningRate·λ).
    public let weightDecay: Float
    /// The number of `step()` calls so far: t − 1 for the next step's bias correction of every parameter
    /// that was never frozen. A parameter that had no gradient in some steps is corrected as if it had
    /// (PyTorch counts per parameter; the two agree whenever every parameter gets a gradient each step).
    public private(set) var stepCount: Int = 0
    /// Each slot's own t − 1: `stepCount` less the steps it was frozen for.
    var slotSteps: [Int]

    /// The default decay filter: decay matrices (rank ≥ 2), not vectors (norm gains, biases) and not
    /// embedding tables (any tensor whose name contains "embed", case-insensitive), following GPT-3 /
    /// OLMo practice: decaying a norm gain or a rarely-seen token's row pulls it toward zero for no
    /// regularising benefit. Pass another filter to change this.
    public static func defaultDecayFilter(name: String, tensor: Tensor) -> Bool {
        tensor.rank >= 2 && !name.lowercased().contains("embed")
    }

    /// - Parameters:
    ///   - parameters: the tensors to optimise with unique names, e.g. `model.namedParameters()`.
    ///   - decayFilter: which parameters get weight decay (see `defaultDecayFilter`).
    public init(parameters: [(name: String, tensor: Tensor)], learningRate: Float,
                beta1: Float = 0.9, beta2: Float = 0.95, epsilon: Float = 1e-8, weightDecay: Float = 0.1,
                decayFilter: (String, Tensor) -> Bool = AdamW.defaultDecayFilter) {
        precondition((0..<1).contains(beta1) && (0..<1).contains(beta2),
                     "AdamW: betas must lie in [0, 1), got β₁ = \(beta1), β₂ = \(beta2)")
        precondition(epsilon > 0 && weightDecay >= 0,
                     "AdamW: need ε > 0 and weight decay ≥ 0, got ε = \(epsilon), λ = \(weightDecay)")
        var names = Set<String>(), tensors = Set<ObjectIdentifier>()
        slots = []
        for (name, tensor) in parameters {
            precondition(names.insert(name).inserted, "AdamW: two parameters are named '\(name)'")
            precondition(tensors.insert(ObjectIdentifier(tensor)).inserted,
                         "AdamW: tensor '\(name)' is listed twice (tied weights must be passed once)")
            slots.append(Slot(name: name, parameter: tensor, m: Tensor(zeros: tensor.shape),
                              v: Tensor(zeros: tensor.shape), decays: decayFilter(name, tensor)))
        }
        slotSteps = Array(repeating: 0, count: slots.count)
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    /// The names of the parameters that get weight decay (for logging what the filter chose).
    public var decayedNames: [String] { slots.filter(\.decays).map(\.name) }

    /// One update of every parameter that has a gradient; parameters whose `grad` is nil are left
    /// exactly as they are (values and moments). Parameters named in `frozen` are left too, and their
    /// step count stays where it is. Does not clear the gradients.
    public func step(freezing frozen: Set<String> = []) {
        stepCount += 1
        let b1 = beta1, b2 = beta2, oneMinusB1 = 1 - beta1, oneMinusB2 = 1 - beta2
        let decayedScale = 1 - learningRate * weightDecay

        for (index, slot) in slots.enumerated() {
            guard !frozen.contains(slot.name) else { continue }
            slotSteps[index] += 1
            guard let grad = slot.parameter.grad else { continue }
            // Bias corrections in Double: 1 − β₂ᵗ is ~0.05 at t = 1 and its Float rounding would
            // otherwise enter every element's update.
            let t = Double(slotSteps[index])
            let correction1 = 1 - pow(Double(beta1), t)
            let correction2 = 1 - pow(Double(beta2), t)
            let stepSize = Float(Double(learningRate) / correction1)  // lr / (1 − β₁ᵗ)
            let rootCorrection2 = Float(correction2.squareRoot())     // √v̂ = √v / √(1 − β₂ᵗ)
            let epsilonScaled = epsilon * rootCorrection2             // so √v̂ + ε = (√v + ε·√(1 − β₂ᵗ)) / √(1 − β₂ᵗ)
            checkShape(grad.shape == slot.parameter.shape,
                       "AdamW: gradient of '\(slot.name)' has shape \(grad.shape), parameter \(slot.parameter.shape)")
            let p = slot.parameter.data, g = grad.data, m = slot.m.data, v = slot.v.data
            let scale = slot.decays ? decayedScale : 1
            // θ − lr·m̂/(√v̂ + ε) = θ − (lr/(1−β₁ᵗ))·m·√(1−β₂ᵗ)/(√v + ε·√(1−β₂ᵗ)): one division per element.
            let numeratorScale = stepSize * rootCorrection2
            // ~12 flops, a square root and a division per element: two threads pay from ~8K elements.
            Parallel.forRanges(slot.parameter.count, minimumPerThread: 8_192) { range in
                for i in range {
                    let gi = g[i]
                    let mi = b1 * m[i] + oneMinusB1 * gi
                    let vi = b2 * v[i] + oneMinusB2 * gi * gi
                    m[i] = mi
                    v[i] = vi
                    p[i] = scale * p[i] - numeratorScale * mi / (vi.squareRoot() + epsilonScaled)
                }
            }
        }
    }

    // MARK: Checkpoints

    /// The moment buffers keyed "m.NAME" and "v.NAME" (the live tensors, no copy: write them out before
    /// the next `step()`, or copy them to keep a snapshot), and, when some parameter was frozen for some
    /// steps, "steps": each parameter's own step count, in parameter order.
    public var state: [String: Tensor] {
        var result: [String: Tensor] = [:]
        for slot in slots {
            result["m." + slot.name] = slot.m
            result["v." + slot.name] = slot.v
        }
        if slotSteps.contains(where: { $0 != stepCount }) {
            result[Self.stepsKey] = Tensor(slotSteps.map(Float.init), shape: [slotSteps.count])
        }
        return result
    }

    static let stepsKey = "steps"

    /// Restores the moments and step counts saved from `state` and `stepCount`, copying the values.
    /// Strict: every "m.NAME"/"v.NAME" must be present with the parameter's shape and nothing else may
    /// be but "steps" (absent: every parameter has trained every step); on any problem nothing is
    /// changed and the error lists every offending tensor.
    public func load(state: [String: Tensor], stepCount: Int) throws {
        var problems: [String] = []
        if stepCount < 0 { problems.append("step count \(stepCount) is negative") }
        var counts = Array(repeating: stepCount, count: slots.count)
        if let saved = state[Self.stepsKey] {
            if saved.shape != [slots.count] {
                problems.append("'\(Self.stepsKey)' has shape \(saved.shape), there are \(slots.count) parameters")
            } else {
                counts = (0..<slots.count).map { Int(saved.data[$0]) }
                if let bad = counts.first(where: { $0 < 0 || $0 > stepCount }) {
                    problems.append("'\(Self.stepsKey)' holds a parameter step count \(bad) outside 0...\(stepCount)")
                }
            }
        }
        var expected: Set<String> = [Self.stepsKey]
        for slot in slots {
            for key in ["m." + slot.name, "v." + slot.name] {
                expected.insert(key)
                guard let saved = state[key] else {
                    problems.append("missing '\(key)' (shape \(slot.parameter.shape))")
                    continue
                }
                if saved.shape != slot.parameter.shape {
                    problems.append("'\(key)' has shape \(saved.shape), the parameter has \(slot.parameter.shape)")
                }
            }
        }
        for key in state.keys.sorted() where !expected.contains(key) {
            problems.append("unexpected '\(key)': no parameter of that name is being optimised")
        }
        guard problems.isEmpty else {
            let shown = problems.prefix(20).joined(separator: "\n  ")
            let more = problems.count > 20 ? "\n  … and \(problems.count - 20) more" : ""
            throw OptimizerStateError(description:
                "AdamW.load: the saved optimiser state does not match this model's parameters:\n  \(shown)\(more)\n"
                + "Load a checkpoint written for the same model configuration, or start the optimiser afresh.")
        }
        for slot in slots {
            slot.m.data.update(from: state["m." + slot.name]!.data, count: slot.m.count)
            slot.v.data.update(from: state["v." + slot.name]!.data, count: slot.v.count)
        }
        self.stepCount = stepCount
        slotSteps = counts
    }
}

/// An optimiser state that does not fit the optimiser; the message names every offending tensor.
public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
}

// Gradient clipping by global norm: Pascanu, Mikolov & Bengio, "On the difficulty of training
// recurrent neural networks" (ICML 2013, §3.2, Algorithm 1), as PyTorch's `clip_grad_norm_`:
//
//   ‖g‖ = √(Σ over all parameters and elements of g²);   if ‖g‖ > maxNorm: g ← g · maxNorm / ‖g‖
//
// The sum is accumulated in Double over fixed blocks of `normBlock` elements and the block sums are
// added in order, so the norm is bit-identical whatever the thread count (Float accumulation would
// lose ~log₂(count) bits on large tensors; Double keeps the norm exact to Float precision).

import Foundation

/// Elements per partial sum: fixed, so that the summation order never depends on the thread count.
private let normBlock = 4_096

/// Scales the gradients of `parameters` so that their global L2 norm is at most `maxNorm`, and
/// returns the norm before clipping. Parameters without a gradient are ignored.
///
/// A non-finite norm (NaN or ±∞: an overflow or a NaN somewhere in the backward pass) is returned
/// as it is and the gradients are left untouched. The caller must then stop the run with an error
/// that names the step (see `NonFiniteGradientError`, and `nonFiniteGradientNames` for the culprits):
/// an optimiser step on such gradients would write NaN into every parameter.
@discardableResult
public func clipGradientNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    precondition(maxNorm > 0, "clipGradientNorm: maxNorm must be > 0, got \(maxNorm)")
    var sumOfSquares = 0.0
    for parameter in parameters {
        guard let grad = parameter.grad else { continue }
        sumOfSquares += sumOfSquaresInDouble(grad.data, count: grad.count)
    }
    let norm = sumOfSquares.squareRoot()
    guard norm.isFinite else { return Float(norm) }
    if norm > Double(maxNorm) {
        let scale = Float(Double(maxNorm) / norm)
        for parameter in parameters {
            guard let grad = parameter.grad else { continue }
            let g = grad.data
            Parallel.forRanges(grad.count) { range in
                for i in range { g[i] *= scale }
            }
        }
    }
    return Float(norm)
}

/// Σ x[i]² in Double, in fixed blocks of `normBlock` (deterministic under any thread count).
private func sumOfSquaresInDouble(_ x: UnsafeMutablePointer<Float>, count: Int) -> Double {
    let blocks = (count + normBlock - 1) / normBlock
    var partial = [Double](repeating: 0, count: blocks)
    partial.withUnsafeMutableBufferPointer { partial in
        let partial = partial.baseAddress!
        Parallel.forRanges(blocks, minimumPerThread: 4) { range in
            for b in range {
                // Four interleaved sums break the add-latency chain; their order is fixed too.
                var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
                let start = b * normBlock, end = min(count, start + normBlock)
                var i = start
                while i + 4 <= end {
                    let x0 = Double(x[i]), x1 = Double(x[i + 1]), x2 = Double(x[i + 2]), x3 = Double(x[i + 3])
                    s0 += x0 * x0; s1 += x1 * x1; s2 += x2 * x2; s3 += x3 * x3
                    i += 4
                }
                while i < end {
                    let x0 = Double(x[i])
                    s0 += x0 * x0
                    i += 1
                }
                partial[b] = (s0 + s1) + (s2 + s3)
            }
        }
    }
    var total = 0.0
    for s in partial { total += s }
    return total
}

/// The names of the parameters whose gradient holds a NaN or infinity, for the error message when
/// `clipGradientNorm` returns a non-finite norm.
public func nonFiniteGradientNames(_ parameters: [(name: String, tensor: Tensor)]) -> [String] {
    parameters.compactMap { name, tensor in
        guard let grad = tensor.grad else { return nil }
        let g = grad.data
        for i in 0..<grad.count where !g[i].isFinite { return name }
        return nil
    }
}

/// The names of the parameters whose values hold a NaN or infinity: a run checks before writing a
/// checkpoint, so that the last checkpoint kept is always a finite one.
public func nonFiniteParameterNames(_ parameters: [(name: String, tensor: Tensor)]) -> [String] {
    parameters.compactMap { name, tensor in
        let values = tensor.data
        for i in 0..<tensor.count where !values[i].isFinite { return name }
        return nil
    }
}

/// The error a training loop throws when the gradient norm is not finite.
public struct NonFiniteGradientError: Error, CustomStringConvertible {
    public let step: Int
    public let norm: Float
    /// Parameters whose gradient held NaN or ±∞ (from `nonFiniteGradientNames`).
    public let parameters: [String]

    public init(step: Int, norm: Float, parameters: [String]) {
        self.step = step
        self.norm = norm
        self.parameters = parameters
    }

    public var description: String {
        let which = parameters.isEmpty ? "" : " in " + parameters.prefix(8).joined(separator: ", ")
            + (parameters.count > 8 ? ", … (\(parameters.count) in all)" : "")
        return "non-finite gradient norm \(norm) at step \(step)\(which); the run was stopped before the "
            + "optimiser step. Lower the learning rate, enable or lower gradient clipping, or look for a NaN "
            + "in the loss (resume from the last checkpoint to reproduce it)."
    }
}

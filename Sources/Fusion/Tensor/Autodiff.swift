// Reverse-mode automatic differentiation over the graph that operations record as they run.
//
// Each differentiable operation computes its output, then calls `recordGraph(inputs:rule:)`; the rule
// receives the output and its gradient and accumulates (`+=`) into its inputs' gradients. A researcher
// adding a layer variant composes existing operations and gets its backward pass for free.

/// Whether operations record the graph (off inside `withoutGradients`, e.g. for sampling).
public enum GradMode {
    nonisolated(unsafe) static var isEnabled = true
}

/// Runs `body` without recording the graph: nothing in it can be differentiated, and nothing is kept.
public func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
    let previous = GradMode.isEnabled
    GradMode.isEnabled = false
    defer { GradMode.isEnabled = previous }
    return try body()
}

extension Tensor {
    /// Attaches this output to the graph when gradients are on and any input needs one.
    /// `rule(output, gradient)` must accumulate into the inputs' `gradientBuffer()`s.
    @discardableResult
    func recordGraph(inputs: [Tensor], rule: @escaping (_ output: Tensor, _ gradient: Tensor) -> Void) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
        requiresGrad = true
        self.inputs = inputs
        backwardRule = rule
        return self
    }

    /// True for a tensor that gradients are accumulated into and kept: one made by the user, not an op.
    public var isLeaf: Bool { backwardRule == nil }

    /// Back-propagates from this scalar: every leaf that requires a gradient gets `grad += ∂self/∂leaf`.
    /// The graph is consumed: intermediate gradients and the recorded rules are released as it goes.
    public func backward() {
        precondition(count == 1, "backward(): start from a scalar loss, not a tensor of shape \(shape)")
        backward(gradient: Tensor(repeating: 1, shape: shape))
    }

    /// Back-propagates a given gradient of some scalar with respect to this tensor (a vector–Jacobian
    /// product): leaves get `grad += gradientᵀ · ∂self/∂leaf`.
    public func backward(gradient: Tensor) {
        checkShape(gradient.count == count, "backward(gradient:) got shape \(gradient.shape) for a tensor of shape \(shape)")
        guard requiresGrad else {
            preconditionFailure("backward(): the output does not depend on any tensor that requires a gradient")
        }
        let order = topologicalOrder()
        let seed = gradientBuffer()
        for i in 0..<count { seed[i] += gradient.data[i] }
        for node in order.reversed() {
            guard let rule = node.backwardRule else { continue }
            if let g = node.grad { rule(node, g) }
            // Release what only backward needed, so memory falls as the pass goes on.
            node.backwardRule = nil
            node.inputs = []
            node.grad = nil
        }
    }

    /// Nodes that require gradients, each after all of its inputs (iterative DFS: graphs can be deep).
    func topologicalOrder() -> [Tensor] {
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Int)] = [(self, 0)]
        visited.insert(ObjectIdentifier(self))
        while let (node, next) = stack.popLast() {
            if next < node.inputs.count {
                stack.append((node, next + 1))
                let input = node.inputs[next]
                if input.requiresGrad, visited.insert(ObjectIdentifier(input)).inserted {
                    stack.append((input, 0))
                }
            } else {
                order.append(node)
            }
        }
        return order
    }
}

// Shape operations: reshape (a view, no copy), permute (a copy into the new order), and slicing and
// concatenation along one axis. Their backward passes move gradients back to where values came from.

extension Tensor {
    /// The same values with another shape of equal size; shares storage (no copy). One dimension may
    /// be -1 and is inferred.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let unknown = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != unknown }.map(\.element).reduce(1, *)
            checkShape(known > 0 && count % known == 0, "reshape \(shape) to \(newShape)")
            resolved[unknown] = count / known
        }
        checkShape(resolved.reduce(1, *) == count,
                   "reshape of \(name ?? "tensor") with shape \(shape) (\(count) elements) to \(newShape)")
        let out = Tensor(storage: storage, shape: resolved)
        // The output's gradient is dropped right after this rule: hand its buffer over instead of copying.
        return out.recordGraph(inputs: [self]) { _, g in self.accumulateGradient(g, handingOver: true) }
    }

    /// Dimensions reordered: output dimension d is input dimension `order[d]` (like torch.permute).
    public func permuted(_ order: [Int]) -> Tensor {
        checkShape(order.sorted() == Array(0..<rank), "permute \(shape) by \(order)")
        let outShape = order.map { shape[$0] }
        let inStrides = Tensor.strides(shape)
        let gatherStrides = order.map { inStrides[$0] }  // input stride of each output dimension
        let out = Tensor(uninitializedShape: outShape)
        Tensor.stridedCopy(from: data, strides: gatherStrides, to: out.data, shape: outShape, accumulate: false)
        return out.recordGraph(inputs: [self]) { _, g in
            // The adjoint of a gather is a scatter: walk the output order, add into the input slots.
            Tensor.stridedScatterAdd(from: g.data, shape: outShape, to: self.gradientBuffer(), strides: gatherStrides)
        }
    }

    /// Swaps two dimensions.
    public func transposed(_ a: Int, _ b: Int) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(a < 0 ? a + rank : a, b < 0 ? b + rank : b)
        return permuted(order)
    }

    /// Elements `start..<start+length` along `axis` (a copy).
    public func narrow(axis: Int, start: Int, length: Int) -> Tensor {
        let axis = axis < 0 ? axis + rank : axis
        checkShape(axis >= 0 && axis < rank && start >= 0 && length >= 0 && start + length <= shape[axis],
                   "narrow(axis: \(axis), start: \(start), length: \(length)) of shape \(shape)")
        let outer = shape[..<axis].reduce(1, *), n = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        var outShape = shape
        outShape[axis] = length
        let out = Tensor(uninitializedShape: outShape)
        for o in 0..<outer {
            (out.data + o * length * inner).update(from: data + (o * n + start) * inner, count: length * inner)
        }
        return out.recordGraph(inputs: [self]) { _, g in
            let gx = self.gradientBuffer()
            for o in 0..<outer {
                let target = gx + (o * n + start) * inner, source = g.data + o * length * inner
                for i in 0..<(length * inner) { target[i] += source[i] }
            }
        }
    }

    /// Row-major strides of a shape.
    static func strides(_ shape: [Int]) -> [Int] {
        var strides = Array(repeating: 1, count: shape.count)
        var running = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = running
            running *= shape[d]
        }
        return strides
    }

    /// out[i] (contiguous, `shape`) = source at Σ index·strides.
    static func stridedCopy(from source: UnsafePointer<Float>, strides: [Int], to out: UnsafeMutablePointer<Float>,
                            shape: [Int], accumulate: Bool) {
        let count = shape.reduce(1, *)
        guard count > 0 else { return }
        if shape.isEmpty { out[0] = accumulate ? out[0] + source[0] : source[0]; return }
        let zeros = Array(repeating: 0, count: shape.count)
        forEachBroadcastRow(shape, strides, zeros) { o, so, _, n, step, _ in
            if accumulate { for j in 0..<n { out[o + j] += source[so + j * step] } }
            else { for j in 0..<n { out[o + j] = source[so + j * step] } }
        }
    }

    /// target at Σ index·strides += source[i] (contiguous, `shape`).
    static func stridedScatterAdd(from source: UnsafePointer<Float>, shape: [Int],
                                  to target: UnsafeMutablePointer<Float>, strides: [Int]) {
        guard shape.reduce(1, *) > 0 else { return }
        if shape.isEmpty { target[0] += source[0]; return }
        let zeros = Array(repeating: 0, count: shape.count)
        forEachBroadcastRow(shape, strides, zeros) { o, to, _, n, step, _ in
            for j in 0..<n { target[to + j * step] += source[o + j] }
        }
    }
}

/// Tensors joined along `axis`; all other dimensions must agree.
public func concatenate(_ tensors: [Tensor], axis: Int) -> Tensor {
    precondition(!tensors.isEmpty, "concatenate: no tensors given")
    let first = tensors[0]
    let axis = axis < 0 ? axis + first.rank : axis
    for t in tensors {
        checkShape(t.rank == first.rank && t.shape.enumerated().allSatisfy { $0.offset == axis || $0.element == first.shape[$0.offset] },
                   "concatenate along axis \(axis): shapes \(tensors.map(\.shape))")
    }
    let outer = first.shape[..<axis].reduce(1, *), inner = first.shape[(axis + 1)...].reduce(1, *)
    let total = tensors.reduce(0) { $0 + $1.shape[axis] }
    var outShape = first.shape
    outShape[axis] = total
    let out = Tensor(uninitializedShape: outShape)
    var offset = 0
    for t in tensors {
        let n = t.shape[axis]
        for o in 0..<outer {
            (out.data + (o * total + offset) * inner).update(from: t.data + o * n * inner, count: n * inner)
        }
        offset += n
    }
    return out.recordGraph(inputs: tensors) { _, g in
        var offset = 0
        for t in tensors {
            let n = t.shape[axis]
            if t.requiresGrad {
                let gt = t.gradientBuffer()
                for o in 0..<outer {
                    let source = g.data + (o * total + offset) * inner, target = gt + o * n * inner
                    for i in 0..<(n * inner) { target[i] += source[i] }
                }
            }
            offset += n
        }
    }
}

extension Tensor {
    /// x [N, D] with the rows listed in `rows` replaced, in order, by the rows of `values` [M, D]
    /// (a scatter; Transfusion puts image patch embeddings where token embeddings were). Backward:
    /// the replaced rows' gradient goes to `values`, every other row's to x.
    public func replacingRows(_ rows: [Int], with values: Tensor) -> Tensor {
        checkShape(rank == 2 && values.rank == 2 && values.shape == [rows.count, shape[1]],
                   "replacingRows: \(rows.count) rows of \(values.shape) into \(shape)")
        let n = shape[0], d = shape[1]
        var replaced = [Bool](repeating: false, count: n)
        for row in rows {
            precondition(row >= 0 && row < n && !replaced[row], "replacingRows: row \(row) out of 0..<\(n) or listed twice")
            replaced[row] = true
        }
        let out = copy()
        for (m, row) in rows.enumerated() { (out.data + row * d).update(from: values.data + m * d, count: d) }
        return out.recordGraph(inputs: [self, values]) { _, g in
            if self.requiresGrad {
                let gx = self.gradientBuffer()
                for row in 0..<n where !replaced[row] {
                    for j in 0..<d { gx[row * d + j] += g.data[row * d + j] }
                }
            }
            if values.requiresGrad {
                let gv = values.gradientBuffer()
                for (m, row) in rows.enumerated() {
                    for j in 0..<d { gv[m * d + j] += g.data[row * d + j] }
                }
            }
        }
    }
}

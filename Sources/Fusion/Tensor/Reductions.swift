// Reductions: sum and mean over everything or over one axis. Sums accumulate in Float64 where a long
// reduction would otherwise lose digits (a loss over 10⁶ elements in Float32 keeps ~3 of them).

extension Tensor {
    /// Σ of all elements, as a scalar tensor.
    public func sum() -> Tensor {
        var total = 0.0
        for i in 0..<count { total += Double(data[i]) }
        FlopCounter.add(count)
        let out = Tensor(scalar: Float(total))
        return out.recordGraph(inputs: [self]) { _, g in
            let gx = self.gradientBuffer(), s = g.data[0]
            Parallel.forRanges(self.count) { r in for i in r { gx[i] += s } }
        }
    }

    /// Mean of all elements, as a scalar tensor.
    public func mean() -> Tensor { sum() * (1 / Float(max(count, 1))) }

    /// Σ along `axis`; the axis is kept with size 1 when `keepingDimension`.
    public func sum(axis: Int, keepingDimension: Bool = false) -> Tensor {
        let axis = axis < 0 ? axis + rank : axis
        checkShape(axis >= 0 && axis < rank, "sum(axis: \(axis)) on a tensor of shape \(shape)")
        let outer = shape[..<axis].reduce(1, *), n = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        var outShape = shape
        if keepingDimension { outShape[axis] = 1 } else { outShape.remove(at: axis) }
        let out = Tensor(zeros: outShape)
        let x = data, y = out.data
        for o in 0..<outer {
            for j in 0..<n {
                let row = x + (o * n + j) * inner, target = y + o * inner
                for i in 0..<inner { target[i] += row[i] }
            }
        }
        FlopCounter.add(count)
        return out.recordGraph(inputs: [self]) { _, g in
            let gx = self.gradientBuffer()
            for o in 0..<outer {
                for j in 0..<n {
                    let row = gx + (o * n + j) * inner, source = g.data + o * inner
                    for i in 0..<inner { row[i] += source[i] }
                }
            }
        }
    }

    /// Mean along `axis`.
    public func mean(axis: Int, keepingDimension: Bool = false) -> Tensor {
        let axis = axis < 0 ? axis + rank : axis
        return sum(axis: axis, keepingDimension: keepingDimension) * (1 / Float(shape[axis]))
    }

    /// Largest element (no gradient: used for inspection and numerics).
    public func maxValue() -> Float {
        var best = -Float.infinity
        for i in 0..<count { best = Swift.max(best, data[i]) }
        return best
    }
}

// NumPy-style broadcasting for binary element-wise operations, and its adjoint: reducing a gradient
// back to the shape of the operand that was broadcast. This is the only place that does either.

/// The shape both operands broadcast to (trailing dimensions aligned; a size-1 dimension stretches).
func broadcastShape(_ a: [Int], _ b: [Int], op: String) -> [Int] {
    let rank = max(a.count, b.count)
    let pa = Array(repeating: 1, count: rank - a.count) + a
    let pb = Array(repeating: 1, count: rank - b.count) + b
    return zip(pa, pb).map { x, y in
        checkShape(x == y || x == 1 || y == 1, "\(op): shapes \(a) and \(b) do not broadcast")
        return max(x, y)
    }
}

/// Strides of `shape` viewed inside `outShape` (0 along broadcast dimensions).
func broadcastStrides(_ shape: [Int], into outShape: [Int]) -> [Int] {
    let padded = Array(repeating: 1, count: outShape.count - shape.count) + shape
    var strides = Array(repeating: 0, count: outShape.count)
    var running = 1
    for d in stride(from: outShape.count - 1, through: 0, by: -1) {
        strides[d] = padded[d] == 1 ? 0 : running
        running *= padded[d]
    }
    return strides
}

/// Visits the output of a broadcast binary op as rows of its last dimension: `body(outOffset,
/// aOffset, bOffset, length, aStep, bStep)`, where a step is 0 (broadcast) or 1 along the row.
@inline(__always)
func forEachBroadcastRow(_ outShape: [Int], _ aStrides: [Int], _ bStrides: [Int],
                         _ body: (Int, Int, Int, Int, Int, Int) -> Void) {
    let rank = outShape.count
    if rank == 0 { body(0, 0, 0, 1, 0, 0); return }
    let length = outShape[rank - 1]
    let rows = outShape.dropLast().reduce(1, *)
    var index = Array(repeating: 0, count: rank - 1)
    var aOffset = 0, bOffset = 0
    for row in 0..<rows {
        body(row * length, aOffset, bOffset, length, aStrides[rank - 1], bStrides[rank - 1])
        // Odometer increment over the leading dimensions.
        var d = rank - 2
        while d >= 0 {
            index[d] += 1
            aOffset += aStrides[d]
            bOffset += bStrides[d]
            if index[d] < outShape[d] { break }
            aOffset -= aStrides[d] * outShape[d]
            bOffset -= bStrides[d] * outShape[d]
            index[d] = 0
            d -= 1
        }
    }
}

extension Tensor {
    /// Adds `gradientTensor` (of the broadcast output shape) into this tensor's gradient, summing over
    /// the dimensions along which this tensor was broadcast.
    func accumulateBroadcastGradient(_ gradientTensor: Tensor) {
        let target = gradientBuffer(), gradient = gradientTensor.data, outShape = gradientTensor.shape
        defer { withExtendedLifetime(gradientTensor) {} }
        if gradientTensor.count == count {
            Parallel.forRanges(count) { r in for i in r { target[i] += gradient[i] } }
            return
        }
        let strides = broadcastStrides(shape, into: outShape)
        forEachBroadcastRow(outShape, strides, strides) { outOffset, offset, _, length, step, _ in
            if step == 0 {
                var sum: Float = 0
                for j in 0..<length { sum += gradient[outOffset + j] }
                target[offset] += sum
            } else {
                for j in 0..<length { target[offset + j] += gradient[outOffset + j] }
            }
        }
    }
}

// Element-wise operations: binary arithmetic with broadcasting, scalar arithmetic, and unary maths.
// Each is one pass over contiguous memory, split over the cores; derivatives are in the backward rules:
//   d(a±b) = da ± db;  d(a·b) = b·da + a·db;  d(a/b) = da/b − (a/b²)·db
//   exp' = exp;  log' = 1/x;  sqrt' = 1/(2·sqrt);  tanh' = 1 − tanh²;  σ' = σ(1 − σ);  relu' = [x > 0]
import Foundation

enum BinaryKind { case add, subtract, multiply, divide }

/// out = a ∘ b for tensors of the broadcast shape (`outShape`), with strides from `forEachBroadcastRow`.
private func binaryKernel(_ kind: BinaryKind, _ a: UnsafePointer<Float>, _ aShape: [Int],
                          _ b: UnsafePointer<Float>, _ bShape: [Int],
                          _ out: UnsafeMutablePointer<Float>, _ outShape: [Int]) {
    let count = outShape.reduce(1, *)
    if aShape == bShape {
        Parallel.forRanges(count) { r in
            switch kind {
            case .add: for i in r { out[i] = a[i] + b[i] }
            case .subtract: for i in r { out[i] = a[i] - b[i] }
            case .multiply: for i in r { out[i] = a[i] * b[i] }
            case .divide: for i in r { out[i] = a[i] / b[i] }
            }
        }
        return
    }
    let aStrides = broadcastStrides(aShape, into: outShape), bStrides = broadcastStrides(bShape, into: outShape)
    forEachBroadcastRow(outShape, aStrides, bStrides) { o, ao, bo, n, sa, sb in
        switch kind {
        case .add: for j in 0..<n { out[o + j] = a[ao + j * sa] + b[bo + j * sb] }
        case .subtract: for j in 0..<n { out[o + j] = a[ao + j * sa] - b[bo + j * sb] }
        case .multiply: for j in 0..<n { out[o + j] = a[ao + j * sa] * b[bo + j * sb] }
        case .divide: for j in 0..<n { out[o + j] = a[ao + j * sa] / b[bo + j * sb] }
        }
    }
}

private func binary(_ kind: BinaryKind, _ a: Tensor, _ b: Tensor, name: String) -> Tensor {
    let outShape = a.shape == b.shape ? a.shape : broadcastShape(a.shape, b.shape, op: name)
    let out = Tensor(uninitializedShape: outShape)
    binaryKernel(kind, a.data, a.shape, b.data, b.shape, out.data, outShape)
    FlopCounter.add(out.count)
    return out.recordGraph(inputs: [a, b]) { out, g in
        // The gradient that flows to each operand before reduction to its own shape.
        func contribution(_ factor: Tensor?, _ divisor: Tensor?, negate: Bool) -> Tensor {
            let t = Tensor(uninitializedShape: outShape)
            if let factor {
                binaryKernel(.multiply, g.data, outShape, factor.data, factor.shape, t.data, outShape)
            } else {
                t.data.update(from: g.data, count: g.count)
            }
            if let divisor { binaryKernel(.divide, t.data, outShape, divisor.data, divisor.shape, t.data, outShape) }
            if negate { Parallel.forRanges(t.count) { r in for i in r { t.data[i] = -t.data[i] } } }
            return t
        }
        switch kind {
        case .add:
            // Same shapes (the residual stream): the output's gradient, dropped after this rule, is
            // handed over to b (the last reader) instead of being copied.
            if a.shape == outShape && b.shape == outShape {
                if a.requiresGrad { a.accumulateGradient(g, handingOver: !b.requiresGrad) }
                if b.requiresGrad { b.accumulateGradient(g, handingOver: true) }
                return
            }
            if a.requiresGrad { a.accumulateBroadcastGradient(g) }
            if b.requiresGrad { b.accumulateBroadcastGradient(g) }
        case .subtract:
            if a.requiresGrad { a.accumulateBroadcastGradient(g) }
            if b.requiresGrad { b.accumulateBroadcastGradient(contribution(nil, nil, negate: true)) }
        case .multiply:
            if a.requiresGrad { a.accumulateBroadcastGradient(contribution(b, nil, negate: false)) }
            if b.requiresGrad { b.accumulateBroadcastGradient(contribution(a, nil, negate: false)) }
        case .divide:
            if a.requiresGrad { a.accumulateBroadcastGradient(contribution(nil, b, negate: false)) }
            // d(a/b)/db = −(a/b)/b = −out/b
            if b.requiresGrad { b.accumulateBroadcastGradient(contribution(out, b, negate: true)) }
        }
    }
}

public func + (a: Tensor, b: Tensor) -> Tensor { binary(.add, a, b, name: "add") }
public func - (a: Tensor, b: Tensor) -> Tensor { binary(.subtract, a, b, name: "subtract") }
public func * (a: Tensor, b: Tensor) -> Tensor { binary(.multiply, a, b, name: "multiply") }
public func / (a: Tensor, b: Tensor) -> Tensor { binary(.divide, a, b, name: "divide") }

// MARK: - Scalar arithmetic

extension Tensor {
    /// a·x + b for scalars a and b, in one pass.
    public func affine(scale a: Float, shift b: Float) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data
        Parallel.forRanges(count) { r in for i in r { y[i] = a * x[i] + b } }
        FlopCounter.add(2 * count)
        return out.recordGraph(inputs: [self]) { _, g in
            let gx = self.gradientBuffer(), gy = g.data
            Parallel.forRanges(self.count) { r in for i in r { gx[i] += a * gy[i] } }
        }
    }
}

public func * (x: Tensor, s: Float) -> Tensor { x.affine(scale: s, shift: 0) }
public func * (s: Float, x: Tensor) -> Tensor { x.affine(scale: s, shift: 0) }
public func + (x: Tensor, s: Float) -> Tensor { x.affine(scale: 1, shift: s) }
public func - (x: Tensor, s: Float) -> Tensor { x.affine(scale: 1, shift: -s) }
public func / (x: Tensor, s: Float) -> Tensor { x.affine(scale: 1 / s, shift: 0) }
public prefix func - (x: Tensor) -> Tensor { x.affine(scale: -1, shift: 0) }

// MARK: - Unary maths

enum UnaryKind { case exp, log, sqrt, tanh, sigmoid, relu, square, abs }

extension Tensor {
    func unary(_ kind: UnaryKind) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data
        Parallel.forRanges(count, minimumPerThread: 4096) { r in
            switch kind {
            case .exp: for i in r { y[i] = fastExp(x[i]) }
            case .log: for i in r { y[i] = Foundation.log(x[i]) }
            case .sqrt: for i in r { y[i] = x[i].squareRoot() }
            case .tanh: for i in r { y[i] = Foundation.tanh(x[i]) }
            case .sigmoid: for i in r { y[i] = logistic(x[i]) }
            case .relu: for i in r { y[i] = max(x[i], 0) }
            case .square: for i in r { y[i] = x[i] * x[i] }
            case .abs: for i in r { y[i] = Swift.abs(x[i]) }
            }
        }
        FlopCounter.add(count)
        return out.recordGraph(inputs: [self]) { out, g in
            let gx = self.gradientBuffer(), gy = g.data, y = out.data
            Parallel.forRanges(self.count, minimumPerThread: 4096) { r in
                switch kind {
                case .exp: for i in r { gx[i] += gy[i] * y[i] }
                case .log: for i in r { gx[i] += gy[i] / x[i] }
                case .sqrt: for i in r { gx[i] += gy[i] * 0.5 / y[i] }
                case .tanh: for i in r { gx[i] += gy[i] * (1 - y[i] * y[i]) }
                case .sigmoid: for i in r { gx[i] += gy[i] * y[i] * (1 - y[i]) }
                case .relu: for i in r { gx[i] += x[i] > 0 ? gy[i] : 0 }
                case .square: for i in r { gx[i] += gy[i] * 2 * x[i] }
                case .abs: for i in r { gx[i] += x[i] > 0 ? gy[i] : (x[i] < 0 ? -gy[i] : 0) }
                }
            }
        }
    }

    public func exp() -> Tensor { unary(.exp) }
    public func log() -> Tensor { unary(.log) }
    public func sqrt() -> Tensor { unary(.sqrt) }
    public func tanh() -> Tensor { unary(.tanh) }
    public func sigmoid() -> Tensor { unary(.sigmoid) }
    public func relu() -> Tensor { unary(.relu) }
    public func squared() -> Tensor { unary(.square) }
    public func abs() -> Tensor { unary(.abs) }
}

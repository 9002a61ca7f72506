import Foundation

// Tensor: a contiguous, row-major Float32 buffer with a shape, and the node of the autodiff graph.
//
// Shape alphabet used across Fusion (declared once here, used in shape comments everywhere):
//   B batch, T time (sequence positions), D model width, H heads, Dh head width (D / H),
//   V vocabulary, F feed-forward width, P image patches, C channels, K codebook entries.
//
// Design: every tensor owns (or shares, for reshapes) one contiguous Float32 buffer, so that kernels
// are plain loops over pointers and matrix products go straight to sgemm with no copies around them.
// Operations build the graph as they run (define-by-run); `backward()` walks it in reverse.

/// The memory a tensor's values live in. Shared between a tensor and its reshaped views.
public final class TensorStorage {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    init(count: Int) {
        self.count = count
        pointer = BufferPool.shared.take(count)
    }

    deinit { BufferPool.shared.give(pointer, count) }
}

/// A caching allocator for tensor buffers, as PyTorch's CPU and CUDA allocators keep freed blocks:
/// a training step allocates the same sizes every time, and a fresh multi-megabyte malloc is a fresh
/// mmap whose pages all fault on first touch (measured: it made a d=512 linear layer's backward
/// pass spend more time in the kernel than in sgemm). Freed buffers wait in per-size free lists,
/// up to `limitBytes` in all, and the next request for the same size reuses one.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()
    /// Largest number of bytes kept idle; beyond it, freed buffers go back to the system.
    var limitBytes = 4 << 30
    private var idle: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var idleBytes = 0
    private let lock = NSLock()

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let capacity = max(count, 1)
        lock.lock()
        if let pointer = idle[capacity]?.popLast() {
            idleBytes -= capacity * 4
            lock.unlock()
            return pointer
        }
        lock.unlock()
        // 64-byte alignment: one cache line, and what AVX-512 loads would want.
        return UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: capacity)
    }

    func give(_ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
        let capacity = max(count, 1)
        lock.lock()
        if idleBytes + capacity * 4 <= limitBytes {
            idle[capacity, default: []].append(pointer)
            idleBytes += capacity * 4
            lock.unlock()
            return
        }
        lock.unlock()
        pointer.deallocate()
    }

    /// Returns every idle buffer to the system.
    func drain() {
        lock.lock()
        for pointers in idle.values { for p in pointers { p.deallocate() } }
        idle = [:]
        idleBytes = 0
        lock.unlock()
    }
}

public final class Tensor {
    /// Row-major dimensions, outermost first.
    public let shape: [Int]
    /// Number of elements: the product of `shape`.
    public let count: Int
    public let storage: TensorStorage

    /// When true, `backward()` accumulates into `grad` for this tensor.
    public var requiresGrad: Bool
    /// The gradient of the loss with respect to this tensor, accumulated with `+=` by `backward()`;
    /// parameters keep it until `zeroGrad()`, intermediate tensors drop it once it has been used.
    public internal(set) var grad: Tensor?
    /// An optional name (parameters: "blocks.3.attn.wq"), used in error messages and checkpoints.
    public var name: String?

    // The graph: the tensors this one was computed from, and the rule that turns this tensor's
    // gradient into contributions to theirs. Both are cleared once backward has used them.
    var inputs: [Tensor] = []
    var backwardRule: ((_ output: Tensor, _ gradient: Tensor) -> Void)?

    /// The values, row-major. Valid while the tensor is alive.
    @inlinable public var data: UnsafeMutablePointer<Float> { storage.pointer }

    public var rank: Int { shape.count }

    /// A tensor whose values are not initialised; every kernel writes all of them before reading.
    public init(uninitializedShape shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = TensorStorage(count: count)
        self.requiresGrad = false
    }

    /// A view of `storage` with another shape of the same element count (used by `reshaped`).
    init(storage: TensorStorage, shape: [Int]) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = storage
        self.requiresGrad = false
    }

    public convenience init(zeros shape: [Int], requiresGrad: Bool = false) {
        self.init(repeating: 0, shape: shape, requiresGrad: requiresGrad)
    }

    public convenience init(repeating value: Float, shape: [Int], requiresGrad: Bool = false) {
        self.init(uninitializedShape: shape)
        data.update(repeating: value, count: count)
        self.requiresGrad = requiresGrad
    }

    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        let expected = shape.reduce(1, *)
        precondition(values.count == expected,
                     "Tensor: \(values.count) values given for shape \(shape), which holds \(expected)")
        self.init(uninitializedShape: shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
        self.requiresGrad = requiresGrad
    }

    /// A scalar (rank-0) tensor.
    public convenience init(scalar: Float) {
        self.init([scalar], shape: [])
    }

    /// The values as a Swift array (a copy).
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "Tensor.item: tensor has shape \(shape), not one element")
        return data[0]
    }

    /// The element at a multi-index (slow; for tests and inspection).
    public subscript(_ index: Int...) -> Float {
        get { data[flatIndex(index)] }
        set { data[flatIndex(index)] = newValue }
    }

    func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == rank, "Tensor: index \(index) for shape \(shape)")
        var flat = 0
        for (i, n) in zip(index, shape) {
            precondition(i >= 0 && i < n, "Tensor: index \(index) out of range for shape \(shape)")
            flat = flat * n + i
        }
        return flat
    }

    /// A new tensor with the same values and no graph (not a view).
    public func copy() -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        out.data.update(from: data, count: count)
        return out
    }

    /// The same values, cut from the graph: gradients do not flow through the result.
    public func detached() -> Tensor { Tensor(storage: storage, shape: shape) }

    /// Zeroes the accumulated gradient (an explicit step, as in llm.c).
    public func zeroGrad() { grad = nil }

    /// The gradient buffer, allocated as zeros on first use; backward rules accumulate into it.
    func gradientBuffer() -> UnsafeMutablePointer<Float> {
        if let g = grad { return g.data }
        let g = Tensor(zeros: shape)
        grad = g
        return g.data
    }

    /// The gradient buffer for a rule that writes every element of its contribution: when no gradient
    /// exists yet it is allocated uninitialised and `fresh` is true (the rule must store, not add:
    /// sgemm with beta 0, `=` instead of `+=`), saving the zero-fill and a read of the zeros.
    func gradientBufferForWriting() -> (pointer: UnsafeMutablePointer<Float>, fresh: Bool) {
        if let g = grad { return (g.data, false) }
        let g = Tensor(uninitializedShape: shape)
        grad = g
        return (g.data, true)
    }

    /// grad += gradient (same element count). When there is no gradient yet and the caller hands
    /// over `gradient` (its last use: a rule's own output gradient, dropped right after the rule),
    /// the buffer becomes this tensor's gradient as is, with no copy; otherwise it is copied or added.
    func accumulateGradient(_ gradient: Tensor, handingOver: Bool) {
        checkShape(gradient.count == count, "gradient of \(gradient.shape) for a tensor of shape \(shape)")
        if grad == nil {
            if handingOver {
                grad = Tensor(storage: gradient.storage, shape: shape)
            } else {
                let g = Tensor(uninitializedShape: shape)
                let source = gradient.data, target = g.data
                Parallel.forRanges(count) { r in (target + r.lowerBound).update(from: source + r.lowerBound, count: r.count) }
                grad = g
            }
            return
        }
        let target = grad!.data, source = gradient.data
        Parallel.forRanges(count) { r in for i in r { target[i] += source[i] } }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = array.prefix(8).map { String(format: "%.4g", Double($0)) }.joined(separator: ", ")
        return "Tensor(\(name.map { "\($0), " } ?? "")shape: \(shape), [\(shown)\(count > 8 ? ", …" : "")])"
    }
}

/// Shape checks that report what was expected, in words a user can act on.
@inline(__always)
func checkShape(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                file: StaticString = #file, line: UInt = #line) {
    if !condition() { preconditionFailure("shape mismatch: " + message(), file: file, line: line) }
}

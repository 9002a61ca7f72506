// Data-parallel gradients: each rank's backward pass leaves the gradient of its share of the loss (a
// share already weighted by the whole batch's normalisers, see `FusionModel.loss(_:rows:generator:)`),
// so the whole batch's gradient is their sum over the ranks, taken with MPI_Allreduce.
//
// Small tensors are copied into buckets of `bucketElements` floats and summed a bucket per call (one
// call per bias vector would pay the latency dozens of times a step); a tensor at least a bucket long
// is summed in place. A parameter no rank touched keeps no gradient, exactly as in one process (AdamW
// then leaves it alone); one that some rank touched gets a gradient on every rank, zeros where absent.
import Foundation

public struct GradientAllreduce {
    public let communicator: Communicator
    /// Floats per MPI_Allreduce: 4 MiB, large enough for full bandwidth, small enough to stay in cache.
    public var bucketElements = 1 << 20
    /// Seconds spent in `sum` since the start (the communication share of a step).
    public private(set) var seconds = 0.0

    public init(communicator: Communicator) { self.communicator = communicator }

    /// Replaces the gradient of every parameter by its sum over the ranks.
    public mutating func sum(_ parameters: [Tensor]) {
        guard communicator.size > 1 else { return }
        let started = Date()
        defer { seconds += Date().timeIntervalSince(started) }
        let touched = communicator.maximum(parameters.map { $0.grad == nil ? 0 : 1 })
        var bucket = [Float](repeating: 0, count: bucketElements)
        var pending: [Tensor] = [], filled = 0
        func flush() {
            guard !pending.isEmpty else { return }
            bucket.withUnsafeMutableBufferPointer { buffer in
                var offset = 0
                for tensor in pending {
                    (buffer.baseAddress! + offset).update(from: tensor.grad!.data, count: tensor.count)
                    offset += tensor.count
                }
                communicator.sum(UnsafeMutableBufferPointer(rebasing: buffer[0..<filled]), bucket: bucketElements)
                offset = 0
                for tensor in pending {
                    tensor.grad!.data.update(from: buffer.baseAddress! + offset, count: tensor.count)
                    offset += tensor.count
                }
            }
            pending = []
            filled = 0
        }
        for (parameter, wasTouched) in zip(parameters, touched) where wasTouched > 0 {
            _ = parameter.gradientBuffer()  // zeros on a rank whose share did not reach it
            if parameter.count >= bucketElements {
                communicator.sum(UnsafeMutableBufferPointer(start: parameter.grad!.data, count: parameter.count), bucket: bucketElements)
                continue
            }
            if filled + parameter.count > bucketElements { flush() }
            pending.append(parameter)
            filled += parameter.count
        }
        flush()
    }
}

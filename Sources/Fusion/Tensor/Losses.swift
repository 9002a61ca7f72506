// Losses, fused with their gradients.
//   Cross-entropy over rows of logits, with an ignore index and an optional z-loss (Chowdhery et al.
//   2022, PaLM §5; used by Chameleon §2.3): loss = mean over counted rows of
//       (log Z − x_target) + z · (log Z)²,   Z = Σ exp(x)
//   whose gradient per row is  (softmax(x) − onehot(target)) + 2·z·log Z · softmax(x),  over the count.
//   MSE: mean((prediction − target)²).
import Foundation

/// Mean cross-entropy of logits [N, V] against N targets; rows whose target is `ignoreIndex` count
/// neither in the loss nor in the mean. With no counted rows the loss is 0.
public func crossEntropy(_ logits: Tensor, targets: [Int32], ignoreIndex: Int32 = -1, zLoss: Float = 0) -> Tensor {
    let v = logits.shape.last ?? 1, rows = logits.count / v
    checkShape(targets.count == rows, "crossEntropy: \(targets.count) targets for \(rows) rows of logits \(logits.shape)")
    for t in targets where t != ignoreIndex && (t < 0 || Int(t) >= v) {
        preconditionFailure("crossEntropy: target \(t) outside 0..<\(v) (and not the ignore index \(ignoreIndex))")
    }
    let counted = targets.reduce(0) { $0 + ($1 == ignoreIndex ? 0 : 1) }
    let logNormalizer = Tensor(uninitializedShape: [rows])  // saved for backward: log Z per row
    let rowLoss = Tensor(zeros: [rows])
    let x = logits.data
    targets.withUnsafeBufferPointer { targets in
        Parallel.forRows(rows, width: v) { r in
            for row in r where targets[row] != ignoreIndex {
                let xr = x + row * v
                let peak = maximum(xr, v)
                let logZ = peak + Foundation.log(sumOfExponentials(xr, minus: peak, v))
                logNormalizer.data[row] = logZ
                rowLoss.data[row] = logZ - xr[Int(targets[row])] + zLoss * logZ * logZ
            }
        }
    }
    var total = 0.0
    for row in 0..<rows { total += Double(rowLoss.data[row]) }
    FlopCounter.add(4 * logits.count)
    let out = Tensor(scalar: counted == 0 ? 0 : Float(total / Double(counted)))
    return out.recordGraph(inputs: [logits]) { _, g in
        // A fresh gradient buffer is stored into (ignored rows get zeros) instead of zero-filled first.
        let (gx, fresh) = logits.gradientBufferForWriting(), scale = g.data[0] / Float(max(counted, 1))
        targets.withUnsafeBufferPointer { targets in
            Parallel.forRows(rows, width: v) { r in
                for row in r {
                    let gr = gx + row * v
                    guard targets[row] != ignoreIndex else {
                        if fresh { gr.update(repeating: 0, count: v) }
                        continue
                    }
                    let xr = x + row * v, logZ = logNormalizer.data[row]
                    let factor = scale * (1 + 2 * zLoss * logZ)
                    if fresh { storeScaledExponentials(xr, minus: logZ, scale: factor, into: gr, v) }
                    else { addScaledExponentials(xr, minus: logZ, scale: factor, into: gr, v) }
                    gr[Int(targets[row])] -= scale
                }
            }
        }
    }
}

/// Mean squared error between two tensors of the same shape.
public func meanSquaredError(_ prediction: Tensor, _ target: Tensor) -> Tensor {
    checkShape(prediction.shape == target.shape, "meanSquaredError: prediction \(prediction.shape) vs target \(target.shape)")
    let n = prediction.count, p = prediction.data, t = target.data
    var total = 0.0
    for i in 0..<n { let e = Double(p[i] - t[i]); total += e * e }
    FlopCounter.add(3 * n)
    let out = Tensor(scalar: Float(total / Double(max(n, 1))))
    return out.recordGraph(inputs: [prediction, target]) { _, g in
        let scale = 2 * g.data[0] / Float(max(n, 1))
        if prediction.requiresGrad {
            let gp = prediction.gradientBuffer()
            Parallel.forRanges(n) { r in for i in r { gp[i] += scale * (p[i] - t[i]) } }
        }
        if target.requiresGrad {
            let gt = target.gradientBuffer()
            Parallel.forRanges(n) { r in for i in r { gt[i] -= scale * (p[i] - t[i]) } }
        }
    }
}

/// SigLIP's pairwise sigmoid loss (Zhai et al. 2023, §3.1, Algorithm 1) over logits [N, N] of N images
/// against N texts: every pair is a binary classification, z = +1 where `positive[i·N + j]`, −1 elsewhere,
///     loss = −(1/N) Σᵢⱼ log σ(z·x) = (1/N) Σᵢⱼ softplus(−z·x),
/// with the gradient  −z · σ(−z·x) / N  per pair. softplus(y) = max(y, 0) + log(1 + e^−|y|), which
/// neither overflows nor loses the small terms.
public func sigmoidPairLoss(_ logits: Tensor, positive: [Bool]) -> Tensor {
    checkShape(logits.rank == 2 && logits.shape[0] == logits.shape[1] && positive.count == logits.count,
               "sigmoidPairLoss: logits \(logits.shape) must be [N, N] with N·N labels (got \(positive.count))")
    let n = logits.shape[0], x = logits.data
    var total = 0.0
    for k in 0..<logits.count {
        let y = positive[k] ? -x[k] : x[k]
        total += Double(Swift.max(y, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(y))))
    }
    FlopCounter.add(6 * logits.count)
    let out = Tensor(scalar: Float(total / Double(n)))
    return out.recordGraph(inputs: [logits]) { _, g in
        let gx = logits.gradientBuffer(), scale = g.data[0] / Float(n)
        for k in 0..<logits.count {
            let z: Float = positive[k] ? 1 : -1
            gx[k] -= scale * z / (1 + Foundation.exp(z * x[k]))  // σ(−z·x) = 1 / (1 + e^{z·x})
        }
    }
}

// Matrix products, all through sgemm with transpose flags and strides (never a copy around them).
//   linear:  y[N, out] = x[N, in] · Wᵀ       (W stored [out, in], as PyTorch's nn.Linear)
//            dx += dy · W,  dW += dyᵀ · x     (two sgemms accumulating with beta = 1)
//   matmul:  C[..., M, N] = op(A)[..., M, K] · op(B)[..., K, N], batched over leading dimensions;
//            a 2-D B is shared by the whole batch, which then folds into M for one large sgemm.

extension Tensor {
    /// The last two dimensions as (rows, columns) and the product of the rest.
    fileprivate var matrixLayout: (batch: Int, rows: Int, columns: Int) {
        precondition(rank >= 2, "matmul: operand of shape \(shape) needs at least two dimensions")
        return (shape.dropLast(2).reduce(1, *), shape[rank - 2], shape[rank - 1])
    }
}

/// y = x · Wᵀ over the last dimension of x: x [..., in], weight [out, in] → [..., out].
public func linear(_ x: Tensor, _ weight: Tensor) -> Tensor {
    checkShape(weight.rank == 2 && x.shape.last == weight.shape[1],
               "linear: input \(x.shape) against weight \(weight.name ?? "") of shape \(weight.shape) (expected [out, \(x.shape.last ?? 0)])")
    let n = x.count / weight.shape[1], inFeatures = weight.shape[1], outFeatures = weight.shape[0]
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outFeatures])
    BLAS.sgemm(transA: false, transB: true, m: n, n: outFeatures, k: inFeatures,
               a: x.data, lda: inFeatures, b: weight.data, ldb: inFeatures, c: out.data, ldc: outFeatures)
    return out.recordGraph(inputs: [x, weight]) { _, g in
        // A fresh gradient buffer is written with beta = 0 (no zero-fill, no read of zeros).
        if x.requiresGrad {  // dx[n, in] += dy[n, out] · W[out, in]
            let (gx, fresh) = x.gradientBufferForWriting()
            BLAS.sgemm(transA: false, transB: false, m: n, n: inFeatures, k: outFeatures,
                       a: g.data, lda: outFeatures, b: weight.data, ldb: inFeatures,
                       beta: fresh ? 0 : 1, c: gx, ldc: inFeatures)
        }
        if weight.requiresGrad {  // dW[out, in] += dyᵀ[out, n] · x[n, in]
            let (gw, fresh) = weight.gradientBufferForWriting()
            BLAS.sgemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: n,
                       a: g.data, lda: outFeatures, b: x.data, ldb: inFeatures,
                       beta: fresh ? 0 : 1, c: gw, ldc: inFeatures)
        }
    }
}

/// y = x · [W₁; W₂; …]ᵀ: several projections of the same input in one sgemm, outputs side by side
/// ([..., out₁ + out₂ + …]); each weight [outᵢ, in] keeps its own gradient. The weights are copied
/// into one stacked matrix per call (Σoutᵢ·in floats, small beside N·Σoutᵢ·in FLOPs), so x is packed
/// once and dx is one product instead of a sum of several. The copy is made again in the backward pass
/// rather than kept between the passes: kept, the copies would hold most of the weights a second time
/// until the backward pass reached them. Same values as `concatenate` of separate `linear`s (the test oracle).
public func linear(_ x: Tensor, stacked weights: [Tensor]) -> Tensor {
    precondition(!weights.isEmpty, "linear(_:stacked:): no weights given")
    let inFeatures = x.shape.last ?? 0
    for w in weights {
        checkShape(w.rank == 2 && w.shape[1] == inFeatures,
                   "linear(_:stacked:): input \(x.shape) against weight \(w.name ?? "") of shape \(w.shape) (expected [out, \(inFeatures)])")
    }
    let outFeatures = weights.reduce(0) { $0 + $1.shape[0] }, n = x.count / max(inFeatures, 1)
    /// The weights' rows one after the other: [Σout, in].
    func stack() -> Tensor {
        let stacked = Tensor(uninitializedShape: [outFeatures, inFeatures])
        var row = 0
        for w in weights {
            (stacked.data + row * inFeatures).update(from: w.data, count: w.count)
            row += w.shape[0]
        }
        return stacked
    }
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outFeatures])
    let stacked = stack()  // released after the product; the backward pass stacks again
    BLAS.sgemm(transA: false, transB: true, m: n, n: outFeatures, k: inFeatures,
               a: x.data, lda: inFeatures, b: stacked.data, ldb: inFeatures, c: out.data, ldc: outFeatures)
    withExtendedLifetime(stacked) {}
    return out.recordGraph(inputs: [x] + weights) { _, g in
        if x.requiresGrad {  // dx[n, in] += dy[n, Σout] · W[Σout, in]
            let stacked = stack()  // the weights are unchanged until the optimiser steps, after the backward pass
            let (gx, fresh) = x.gradientBufferForWriting()
            BLAS.sgemm(transA: false, transB: false, m: n, n: inFeatures, k: outFeatures,
                       a: g.data, lda: outFeatures, b: stacked.data, ldb: inFeatures,
                       beta: fresh ? 0 : 1, c: gx, ldc: inFeatures)
            withExtendedLifetime(stacked) {}
        }
        guard weights.contains(where: { $0.requiresGrad }) else { return }
        // dW[Σout, in] = dyᵀ · x, then each weight's rows go to its own gradient.
        let gw = Tensor(uninitializedShape: [outFeatures, inFeatures])
        BLAS.sgemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: n,
                   a: g.data, lda: outFeatures, b: x.data, ldb: inFeatures, c: gw.data, ldc: inFeatures)
        var row = 0
        for w in weights {
            if w.requiresGrad {
                let source = gw.data + row * inFeatures
                let (target, fresh) = w.gradientBufferForWriting()
                if fresh { target.update(from: source, count: w.count) } else { for i in 0..<w.count { target[i] += source[i] } }
            }
            row += w.shape[0]
        }
    }
}

/// C = op(A) · op(B) over the last two dimensions, batched over the leading ones (which must match,
/// or B must be 2-D and is then shared).
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    let (batchA, rowsA, colsA) = a.matrixLayout
    let (batchB, rowsB, colsB) = b.matrixLayout
    let m = transposeA ? colsA : rowsA, k = transposeA ? rowsA : colsA
    let kB = transposeB ? colsB : rowsB, n = transposeB ? rowsB : colsB
    checkShape(k == kB, "matmul: inner dimensions differ, \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
    let sharedB = b.rank == 2
    checkShape(sharedB || (batchA == batchB && a.shape.dropLast(2) == b.shape.dropLast(2)),
               "matmul: batch dimensions differ, \(a.shape) · \(b.shape)")
    let out = Tensor(uninitializedShape: Array(a.shape.dropLast(2)) + [m, n])
    let strideA = rowsA * colsA, strideB = sharedB ? 0 : rowsB * colsB, strideC = m * n

    if sharedB && !transposeA {
        // Fold the batch into the rows of one sgemm: [batch·M, K] · op(B).
        BLAS.sgemm(transA: false, transB: transposeB, m: batchA * m, n: n, k: k,
                   a: a.data, lda: colsA, b: b.data, ldb: colsB, c: out.data, ldc: n)
    } else {
        BLAS.sgemmBatched(count: batchA, transA: transposeA, transB: transposeB, m: m, n: n, k: k,
                          a: a.data, lda: colsA, strideA: strideA, b: b.data, ldb: colsB, strideB: strideB,
                          c: out.data, ldc: n, strideC: strideC)
    }
    return out.recordGraph(inputs: [a, b]) { _, g in
        if a.requiresGrad {
            // dop(A) = dC · op(B)ᵀ; for a transposed A the result is written transposed: dA = op(B) · dCᵀ.
            let ga = a.gradientBuffer()
            if transposeA {
                BLAS.sgemmBatched(count: batchA, transA: transposeB, transB: true, m: k, n: m, k: n,
                                  a: b.data, lda: colsB, strideA: strideB, b: g.data, ldb: n, strideB: strideC,
                                  beta: 1, c: ga, ldc: colsA, strideC: strideA)
            } else {
                BLAS.sgemmBatched(count: sharedB ? 1 : batchA, transA: false, transB: !transposeB,
                                  m: sharedB ? batchA * m : m, n: k, k: n,
                                  a: g.data, lda: n, strideA: strideC, b: b.data, ldb: colsB, strideB: strideB,
                                  beta: 1, c: ga, ldc: colsA, strideC: strideA)
            }
        }
        if b.requiresGrad {
            // dop(B) = op(A)ᵀ · dC; for a transposed B: dB = dCᵀ · op(A). A shared B sums over the batch.
            let gb = b.gradientBuffer()
            if sharedB && !transposeA {
                if transposeB {
                    BLAS.sgemm(transA: true, transB: false, m: n, n: k, k: batchA * m,
                               a: g.data, lda: n, b: a.data, ldb: colsA, beta: 1, c: gb, ldc: colsB)
                } else {
                    BLAS.sgemm(transA: true, transB: false, m: k, n: n, k: batchA * m,
                               a: a.data, lda: colsA, b: g.data, ldb: n, beta: 1, c: gb, ldc: colsB)
                }
            } else if transposeB {
                BLAS.sgemmBatched(count: batchA, transA: true, transB: transposeA, m: n, n: k, k: m,
                                  a: g.data, lda: n, strideA: strideC, b: a.data, ldb: colsA, strideB: strideA,
                                  beta: 1, c: gb, ldc: colsB, strideC: strideB)
            } else {
                BLAS.sgemmBatched(count: batchA, transA: !transposeA, transB: false, m: k, n: n, k: m,
                                  a: a.data, lda: colsA, strideA: strideA, b: g.data, ldb: n, strideB: strideC,
                                  beta: 1, c: gb, ldc: colsB, strideC: strideB)
            }
        }
    }
}

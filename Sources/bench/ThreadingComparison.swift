// How the core's matrix products run on the cores: Fusion's own panels (`BLAS.sgemm`, OpenBLAS on each
// calling thread) against one OpenBLAS call on its own threads (`BLAS.withOpenBLASThreads`), for every
// product of a training step at the three reference sizes: each projection's forward y = x·Wᵀ and
// backward dx = dy·W, dW = dyᵀ·x, row-major as `linear` calls them.
import Foundation
import Fusion

struct CoreProduct {
    let name: String
    let transA: Bool, transB: Bool, m: Int, n: Int, k: Int

    /// The three products of a projection from `inputs` to `outputs` features over `rows` tokens.
    static func ofProjection(_ label: String, rows: Int, inputs: Int, outputs: Int) -> [CoreProduct] {
        [CoreProduct(name: "\(label) y=x·Wᵀ", transA: false, transB: true, m: rows, n: outputs, k: inputs),
         CoreProduct(name: "\(label) dx=dy·W", transA: false, transB: false, m: rows, n: inputs, k: outputs),
         CoreProduct(name: "\(label) dW=dyᵀ·x", transA: true, transB: false, m: outputs, n: inputs, k: rows)]
    }

    /// Every product of one training step of `size` (one of each: the layers repeat the same shapes).
    static func ofStep(_ size: ReferenceSize) -> [CoreProduct] {
        let config = size.config, rows = size.batch * ReferenceSize.context
        let d = config.width, f = config.resolvedMLPHidden
        return [("QKV", d, 3 * d), ("out", d, d), ("gate+up", d, 2 * f), ("down", f, d), ("head", d, ReferenceSize.vocabulary)]
            .flatMap { label, inputs, outputs in ofProjection("\(size.name) \(label)", rows: rows, inputs: inputs, outputs: outputs) }
    }
}

/// Prints and records GFLOP/s of both ways for each product whose name matches the filters.
func runThreadingComparison(_ products: [CoreProduct]) {
    guard !products.isEmpty else { return }
    print("\nmatrix product (row-major m×n×k)                      Fusion's panels   OpenBLAS threads   panels ÷ OpenBLAS   (GFLOP/s)")
    for p in products {
        let a = random([p.m * p.k], seed: 26), b = random([p.k * p.n], seed: 27), c = Tensor(uninitializedShape: [p.m * p.n])
        let (lda, ldb) = (p.transA ? p.m : p.k, p.transB ? p.k : p.n)
        let product = {
            BLAS.sgemm(transA: p.transA, transB: p.transB, m: p.m, n: p.n, k: p.k, a: a.data, lda: lda, b: b.data, ldb: ldb,
                       c: c.data, ldc: p.n)
        }
        let flops = 2 * Double(p.m * p.n * p.k)
        let panels = flops / measure(product).seconds / 1e9
        let openBLAS = flops / BLAS.withOpenBLASThreads(Parallel.threadCount) { measure(product) }.seconds / 1e9
        let label = "\(p.name) \(p.m)×\(p.n)×\(p.k)".padding(toLength: 52, withPad: " ", startingAt: 0)
        print(String(format: "%@ %10.1f %18.1f %17.2f×", label, panels, openBLAS, panels / openBLAS))
        record("threading", "", numbers: [("m", Double(p.m)), ("n", Double(p.n)), ("k", Double(p.k)), ("panels_gflops", panels),
                                          ("openblas_threads_gflops", openBLAS)],
               strings: [("name", p.name)])
    }
}

// The one file that talks to OpenBLAS: single and strided-batched sgemm, and how a product is spread
// over the cores.
//
// OpenBLAS runs on the calling thread only; `sgemm` splits a large product into row (or column) panels
// itself and runs them on our own threads, the ones the element-wise passes use. Measured: each of a
// training step's products alone runs as fast as with OpenBLAS's own threading (`bench threading`,
// medians 1.02–1.05× at S, M, L), and the median S step is 20 % shorter, because no OpenBLAS worker
// waits, wakes or spins between products (measured 2026-11 on another host: results/bench's git history).
// The panels split m or n, never k, at the register tiles this CPU's kernels need (found by trying,
// `panelTiles`), so every element is the same dot product in the same order however many panels
// computed it (tested bit for bit).
import CBLAS
import Foundation

public enum BLAS {
    /// C[m×n] = alpha · op(A) · op(B) + beta · C, row-major; op transposes when the flag is set.
    /// lda/ldb/ldc are the row strides of A, B, C as stored (so sub-matrices need no copy).
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        FlopCounter.add(2 * m * n * k)
        let panels = usesOwnPanels ? panelCount(m: m, n: n, k: k) : 1
        guard panels > 1 else {
            sgemmUncounted(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                           b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        let (alongRows, tile) = splitAxis(m: m, n: n)!
        Parallel.perform(iterations: panels) { panel in
            sgemmPanel(panel, of: panels, alongRows: alongRows, tile: tile, transA: transA, transB: transB, m: m, n: n, k: k,
                       alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
    }

    /// Panel `panel` of `panels` of the product, on the calling thread: rows start..<end of op(A) and C
    /// when split along rows, else columns start..<end of op(B) and C, edges on multiples of `tile`.
    static func sgemmPanel(_ panel: Int, of panels: Int, alongRows: Bool, tile: Int, transA: Bool, transB: Bool,
                           m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                           b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let extent = alongRows ? m : n
        let start = panelBoundary(panel, of: panels, extent: extent, tile: tile)
        let end = panelBoundary(panel + 1, of: panels, extent: extent, tile: tile)
        if alongRows {
            sgemmUncounted(transA: transA, transB: transB, m: end - start, n: n, k: k, alpha: alpha,
                           a: a + (transA ? start : start * lda), lda: lda, b: b, ldb: ldb,
                           beta: beta, c: c + start * ldc, ldc: ldc)
        } else {
            sgemmUncounted(transA: transA, transB: transB, m: m, n: end - start, k: k, alpha: alpha,
                           a: a, lda: lda, b: b + (transB ? start * ldb : start), ldb: ldb,
                           beta: beta, c: c + start, ldc: ldc)
        }
    }

    /// The fewest multiply-adds a panel gets. Below it, waking a second thread (a few microseconds)
    /// costs about what the second core saves. It also keeps every panel of a split product on the
    /// kernel the whole product uses: OpenBLAS 0.3.21 computes products of at most 10⁶ multiply-adds with
    /// separate small-matrix kernels that round differently. A panel is at least 64 rows or columns wide
    /// before its edges are rounded to its tile, so it keeps at least 3/4 of this: 1.05 × 10⁶.
    static let panelMultiplyAdds = 1_400_000

    /// How many panels `sgemm` splits an m×n×k product into: at most one per thread, each at least 64
    /// rows or columns wide and `panelMultiplyAdds` large; 1 where no split keeps the one-call result.
    static func panelCount(m: Int, n: Int, k: Int) -> Int {
        guard Parallel.threadCount > 1, let (alongRows, _) = splitAxis(m: m, n: n) else { return 1 }
        return max(1, min(Parallel.threadCount, (alongRows ? m : n) / 64, m * n * k / panelMultiplyAdds))
    }

    /// Which extent a product is split along, and the tile its panel edges are multiples of: the longer
    /// one where this machine's kernels allow it (see `panelTiles`), else the other; nil when neither.
    static func splitAxis(m: Int, n: Int) -> (alongRows: Bool, tile: Int)? {
        let rows = panelTiles.rows.map { (true, $0) }, columns = panelTiles.columns.map { (false, $0) }
        let order = m >= n ? [rows, columns] : [columns, rows]
        return order.compactMap { $0 }.first { 2 * max(64, $0.1) <= ($0.0 ? m : n) }
    }

    /// The kernel family OpenBLAS picked for this CPU ("Zen", "SkylakeX", …).
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// The register tiles whose multiples a panel's edges must be for every element to come out bit
    /// for bit as one call computes it, along rows and along columns of C (nil: no split does). They
    /// depend on the kernels OpenBLAS picked for this CPU — 16 both ways for its SkylakeX kernels, while
    /// its Zen (Haswell) kernels keep rows at multiples of 48 and no column split — so they are found
    /// once, by trying: each candidate splits probe products in three and must reproduce them exactly.
    static let panelTiles: (rows: Int?, columns: Int?) = {
        _ = openBLASOnCallingThread
        func reproduces(alongRows: Bool, tile: Int) -> Bool {
            // Shapes like a training step's: many rows and few columns (or the transpose), ragged edges.
            for (long, short, k) in [(2_400, 70, 40), (1_517, 300, 21)] {
                let (m, n) = alongRows ? (long, short) : (short, long)
                let a = (0..<(m * k)).map { Float(sin(Double($0) * 0.37)) }, b = (0..<(k * n)).map { Float(cos(Double($0) * 0.23)) }
                for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
                    var whole = [Float](repeating: 0, count: m * n), split = whole
                    let (lda, ldb) = (transA ? m : k, transB ? k : n)
                    sgemmUncounted(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb,
                                   beta: 0, c: &whole, ldc: n)
                    split.withUnsafeMutableBufferPointer { c in
                        for panel in 0..<3 {
                            sgemmPanel(panel, of: 3, alongRows: alongRows, tile: tile, transA: transA, transB: transB, m: m, n: n, k: k,
                                       alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: c.baseAddress!, ldc: n)
                        }
                    }
                    if !zip(whole, split).allSatisfy({ $0.bitPattern == $1.bitPattern }) { return false }
                }
            }
            return true
        }
        let candidates = [16, 48, 96]
        return (candidates.first { reproduces(alongRows: true, tile: $0) }, candidates.first { reproduces(alongRows: false, tile: $0) })
    }()

    /// Where panel `index` of `panels` starts along an extent: an even split rounded to multiples of
    /// `tile` (OpenBLAS's register tiles), so no panel but the last computes a ragged edge tile.
    static func panelBoundary(_ index: Int, of panels: Int, extent: Int, tile: Int) -> Int {
        index == panels ? extent : min(extent, (extent * index / panels + tile / 2) / tile * tile)
    }

    /// sgemm on the calling thread, without touching `FlopCounter` (which is not thread-safe): for
    /// kernels that call BLAS from several threads at once and count their FLOPs themselves, once, on the
    /// calling thread.
    @inline(__always)
    static func sgemmUncounted(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                               alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                               b: UnsafePointer<Float>, ldb: Int,
                               beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = openBLASOnCallingThread
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }

    /// Set once, before the first product: OpenBLAS computes each call on the thread that makes it. Its
    /// worker threads, started when the library loads, then never get work and go to sleep.
    private static let openBLASOnCallingThread: Void = { openblas_set_num_threads(1) }()

    /// `count` independent products, the i-th reading A + i·strideA, B + i·strideB, writing C + i·strideC.
    public static func sgemmBatched(count: Int, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, strideA: Int,
                                    b: UnsafePointer<Float>, ldb: Int, strideB: Int,
                                    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int) {
        for i in 0..<count {
            sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                  a: a + i * strideA, lda: lda, b: b + i * strideB, ldb: ldb,
                  beta: beta, c: c + i * strideC, ldc: ldc)
        }
    }

    /// OpenBLAS's build description (version, target CPU, threading), for logs.
    public static var configuration: String {
        openblas_get_config().map { String(cString: $0) } ?? "unknown"
    }

    /// Runs `body` with OpenBLAS's own threading instead of `sgemm`'s panels: each product is one call
    /// that OpenBLAS splits over `threads` of its workers. For comparison only (the bench's ceiling takes
    /// the better of the two). Afterwards its workers are shut down: left alone they spin on sched_yield
    /// for a while after their last product and slow whatever runs next on the cores (measured: our
    /// panels at half speed for seconds). They start again if OpenBLAS threading is used again.
    public static func withOpenBLASThreads<R>(_ threads: Int, _ body: () throws -> R) rethrows -> R {
        _ = openBLASOnCallingThread
        openblas_set_num_threads(Int32(threads))
        usesOwnPanels = false
        defer {
            usesOwnPanels = true
            openblas_set_num_threads(1)
            if let library = dlopen(nil, RTLD_NOW), let shutDown = dlsym(library, "blas_thread_shutdown_") {
                _ = unsafeBitCast(shutDown, to: (@convention(c) () -> Int32).self)()
            }
        }
        return try body()
    }

    /// False only inside `withOpenBLASThreads`.
    nonisolated(unsafe) private static var usesOwnPanels = true
}

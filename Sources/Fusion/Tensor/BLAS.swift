// The one file that talks to OpenBLAS: single and strided-batched sgemm, the thread count, and how
// long its idle worker threads spin.
import CBLAS
import Foundation

public enum BLAS {
    /// C[m×n] = alpha · op(A) · op(B) + beta · C, row-major; op transposes when the flag is set.
    /// lda/ldb/ldc are the row strides of A, B, C as stored (so sub-matrices need no copy).
    @inline(__always)
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        FlopCounter.add(2 * m * n * k)
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }

    /// sgemm without touching `FlopCounter` (which is not thread-safe): for kernels that call BLAS from
    /// several threads at once and count their FLOPs themselves, once, on the calling thread.
    @inline(__always)
    static func sgemmUncounted(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                               alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                               b: UnsafePointer<Float>, ldb: Int,
                               beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }

    /// Runs `body` with OpenBLAS on one thread, so that `body` may call sgemm from several threads of
    /// its own (each call then runs on its caller's thread; OpenBLAS splits only m and n, never k, so
    /// a product's values do not depend on how many threads computed it).
    static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        let previous = threadCount
        if previous != 1 { threadCount = 1 }
        defer { if previous != 1 { threadCount = previous } }
        return try body()
    }

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

    /// OpenBLAS's own worker threads (it uses all cores by default).
    public static var threadCount: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }

    /// After each product, OpenBLAS's idle workers spin on sched_yield for 2^28 cycles (≈ 0.1 s) before
    /// they sleep (its THREAD_TIMEOUT), so during the element-wise passes between products a worker keeps
    /// taking time slices from our own two threads: measured, about 4 % of a d = 512 training step went to
    /// the scheduler. With a timeout of 2^`exponent` cycles they sleep at once, and waking one costs a few
    /// microseconds per product. OpenBLAS reads OPENBLAS_THREAD_TIMEOUT when it is loaded; this sets it
    /// (unless the user did), has OpenBLAS read its environment again and restarts its workers (they start
    /// again at the next product). Call it once, first thing, from a program's entry point. Where the
    /// library lacks these entry points (another OpenBLAS build), nothing changes.
    public static func letIdleWorkersSleep(exponent: Int = 4) {
        guard getenv("OPENBLAS_THREAD_TIMEOUT") == nil,
              let library = dlopen(nil, RTLD_NOW),
              let readEnvironment = dlsym(library, "openblas_read_env"),
              let shutDownWorkers = dlsym(library, "blas_thread_shutdown_") else { return }
        setenv("OPENBLAS_THREAD_TIMEOUT", String(exponent), 1)  // also inherited by the processes we start
        unsafeBitCast(readEnvironment, to: (@convention(c) () -> Void).self)()
        _ = unsafeBitCast(shutDownWorkers, to: (@convention(c) () -> Int32).self)()
    }
}

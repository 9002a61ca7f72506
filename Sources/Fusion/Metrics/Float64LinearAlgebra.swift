// The one file that calls OpenBLAS in double precision: dgemm, and LAPACK's symmetric
// eigen-decomposition dsyevd (Golub & Van Loan, "Matrix Computations", §8.4 divide and conquer).
// Metrics such as the Fréchet distance need Float64: their result is a small difference of large
// traces. These products are not counted by FlopCounter, which counts training and sampling work.
import CBLAS

public enum Float64LinearAlgebra {
    /// C[m×n] = alpha · op(A) · op(B) + beta · C, row-major, as `BLAS.sgemm` in Float64.
    public static func dgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                             alpha: Double = 1, a: UnsafePointer<Double>, lda: Int,
                             b: UnsafePointer<Double>, ldb: Int,
                             beta: Double = 0, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                    beta, c, blasint(ldc))
    }

    /// C = op(A) · op(B) for row-major arrays: A is [m, k] (or [k, m] with `transA`), B is [k, n]
    /// (or [n, k] with `transB`); returns C [m, n].
    public static func product(_ a: [Double], _ b: [Double], m: Int, n: Int, k: Int,
                               transA: Bool = false, transB: Bool = false) -> [Double] {
        precondition(a.count == m * k && b.count == k * n,
                     "Float64LinearAlgebra.product: A has \(a.count) values, B \(b.count), expected \(m * k) and \(k * n)")
        var c = [Double](repeating: 0, count: m * n)
        guard m > 0 && n > 0 else { return c }
        if k == 0 { return c }
        c.withUnsafeMutableBufferPointer { c in
            dgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: transA ? m : k,
                  b: b, ldb: transB ? k : n, c: c.baseAddress!, ldc: n)
        }
        return c
    }

    /// Eigenvalues (ascending) and orthonormal eigenvectors of the symmetric n×n `matrix` (row-major;
    /// only its lower triangle in row-major terms is read, i.e. LAPACK's upper triangle). `vectors` is
    /// row-major [n, n] with **row j the eigenvector of `values[j]`** (LAPACK's column-major columns).
    public static func symmetricEigen(_ matrix: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        precondition(matrix.count == n * n, "symmetricEigen: \(matrix.count) values for a \(n)×\(n) matrix")
        guard n > 0 else { return ([], []) }
        if let bad = matrix.firstIndex(where: { !$0.isFinite }) {
            throw LinearAlgebraError(description: "symmetricEigen: entry (\(bad / n), \(bad % n)) is \(matrix[bad]); the matrix must be finite (check the features for NaN or infinity)")
        }
        var a = matrix
        var values = [Double](repeating: 0, count: n)
        var jobz = CChar(UInt8(ascii: "V")), uplo = CChar(UInt8(ascii: "U"))
        var size = Int32(n), lda = Int32(n), info: Int32 = 0
        // Workspace query (lwork = liwork = -1), then the decomposition.
        var workSize = 0.0, iworkSize: Int32 = 0, workQuery: Int32 = -1, iworkQuery: Int32 = -1
        dsyevd_(&jobz, &uplo, &size, &a, &lda, &values, &workSize, &workQuery, &iworkSize, &iworkQuery, &info, 1, 1)
        guard info == 0 else {
            throw LinearAlgebraError(description: "dsyevd workspace query failed with info = \(info)")
        }
        var lwork = Int32(workSize.rounded(.up)), liwork = iworkSize
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevd_(&jobz, &uplo, &size, &a, &lda, &values, &work, &lwork, &iwork, &liwork, &info, 1, 1)
        guard info == 0 else {
            throw LinearAlgebraError(description: info < 0
                ? "dsyevd: argument \(-info) had an illegal value (a bug in Float64LinearAlgebra)"
                : "dsyevd: the eigenvalue algorithm failed to converge (\(info) off-diagonal elements); the matrix is too ill-conditioned")
        }
        return (values, a)
    }
}

public struct LinearAlgebraError: Error, CustomStringConvertible {
    public let description: String
}

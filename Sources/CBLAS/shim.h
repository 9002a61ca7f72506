// OpenBLAS's CBLAS interface and its thread-count controls, as Debian ships them (pkg-config openblas).
#include <cblas.h>
#include <stddef.h>

// LAPACK's symmetric eigen-decomposition (divide and conquer), which Debian's libopenblas carries
// (`nm -D libopenblas.so | grep dsyevd_`) although libopenblas-dev installs no lapack.h or lapacke.h;
// so the Fortran entry point is declared here, as reference LAPACK's lapack.h declares it: every
// argument by pointer, column-major, then gfortran's hidden lengths of the two character arguments.
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_length, size_t uplo_length);

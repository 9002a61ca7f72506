// OpenBLAS's CBLAS interface and its thread-count controls, as Debian ships them (pkg-config openblas).
#include <cblas.h>

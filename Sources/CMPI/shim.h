// Open MPI's C API as Debian ships it (libopenmpi-dev, pkg-config ompi-c). Its predefined handles
// (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are macros over global objects, which Swift cannot import:
// each one the project uses is wrapped in a static inline function here.
#include <mpi.h>

static inline MPI_Comm fusion_MPI_COMM_WORLD(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype fusion_MPI_FLOAT(void) { return MPI_FLOAT; }
static inline MPI_Datatype fusion_MPI_DOUBLE(void) { return MPI_DOUBLE; }
static inline MPI_Datatype fusion_MPI_INT(void) { return MPI_INT; }
static inline MPI_Datatype fusion_MPI_BYTE(void) { return MPI_BYTE; }
static inline MPI_Op fusion_MPI_SUM(void) { return MPI_SUM; }
static inline MPI_Op fusion_MPI_MAX(void) { return MPI_MAX; }
static inline MPI_Op fusion_MPI_MIN(void) { return MPI_MIN; }
static inline void *fusion_MPI_IN_PLACE(void) { return MPI_IN_PLACE; }
static inline int fusion_MPI_THREAD_FUNNELED(void) { return MPI_THREAD_FUNNELED; }

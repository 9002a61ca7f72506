// HDF5's C API as Debian ships it (headers under /usr/include/hdf5/serial, library hdf5_serial).
// Many HDF5 constants are macros that call H5open() first; Swift cannot import those, so each one
// the project uses is wrapped in a static inline function here.
#include <hdf5.h>

static inline hid_t fusion_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t fusion_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t fusion_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t fusion_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t fusion_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t fusion_H5T_C_S1(void) { return H5T_C_S1; }
static inline hid_t fusion_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t fusion_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline unsigned fusion_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned fusion_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned fusion_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned fusion_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline hsize_t fusion_H5S_UNLIMITED(void) { return H5S_UNLIMITED; }
static inline hid_t fusion_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t fusion_H5S_ALL(void) { return H5S_ALL; }
// Added for Sources/Fusion/IO/HDF5.swift: the error stack, unsigned 64-bit integers (RNG state),
// variable-length strings, and link creation (intermediate groups).
static inline hid_t fusion_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t fusion_H5T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline size_t fusion_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline hid_t fusion_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }

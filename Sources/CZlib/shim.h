// zlib, as Debian ships it (pkg-config zlib): gzip streams for the IDX data files.
#include <zlib.h>

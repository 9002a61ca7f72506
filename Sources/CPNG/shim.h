// libpng's simplified API (png_image_*), which reports errors through a return value instead of longjmp.
#include <png.h>

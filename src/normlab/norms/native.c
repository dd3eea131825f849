/* Compiled CPU kernels for Batch-Instance Norm and Switchable Norm (see native.py): the kernels of
 * native_kernels.h for float (suffix _f) and double (suffix _d). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define GRAIN 32768 /* elements below which a pass runs on one thread (ATen's grain size) */

#define scalar_t float
#define FN(name) name##_f
#include "native_kernels.h"
#undef scalar_t
#undef FN

#define scalar_t double
#define FN(name) name##_d
#include "native_kernels.h"

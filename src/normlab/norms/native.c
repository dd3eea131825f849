/* Compiled CPU kernels (see native.py): Batch-Instance Norm and Switchable Norm (native_kernels.h) and the
 * normalized LSTM's step (native_lstm.h), for float (suffix _f) and double (suffix _d). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define GRAIN 32768 /* elements below which a pass runs on one thread (ATen's grain size) */

#define scalar_t float
#define FN(name) name##_f
#include "native_kernels.h"
#include "native_lstm.h"
#undef scalar_t
#undef FN

#define scalar_t double
#define FN(name) name##_d
#include "native_kernels.h"
#include "native_lstm.h"

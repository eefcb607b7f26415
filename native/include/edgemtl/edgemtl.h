/* edgemtl.h: the native runtime's C API, for C programs, other languages (ctypes,
 * cgo, JNI) and GStreamer elements. It wraps edgemtl::Runtime (runtime.hpp).
 *
 *   edgemtl_runtime* rt = NULL;
 *   if (edgemtl_open("bundles/scenes3", NULL, &rt) != EDGEMTL_OK) {
 *     fprintf(stderr, "%s\n", edgemtl_last_error());
 *     return 2;
 *   }
 *   double r[3] = {0.6, 0.2, 0.2};
 *   edgemtl_set_preference(rt, r, 3, 0.5, 1);             // wait until the sub-network is active
 *   float* outs[3];                                       // one buffer per task, caller-owned
 *   for (int t = 0; t < 3; ++t) outs[t] = malloc(edgemtl_output_size(rt, t) * sizeof(float));
 *   edgemtl_run_frame(rt, rgb, height, width, "RGB", outs);
 *   edgemtl_close(rt);
 *
 * Every function returns EDGEMTL_OK or an error code; edgemtl_last_error() then holds
 * the message (per thread). A runtime may be used from several threads: runs, swaps and
 * stats are thread-safe; close it once, after every other call returned.
 */
#ifndef EDGEMTL_H
#define EDGEMTL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDGEMTL_API_VERSION 1

typedef struct edgemtl_runtime edgemtl_runtime;

enum edgemtl_status {
  EDGEMTL_OK = 0,
  EDGEMTL_ERROR = 1,            /* refused or failed: a bad bundle, preference, budget or frame, a backend
                                   or a swap; edgemtl_last_error() names it */
  EDGEMTL_INVALID_ARGUMENT = 2  /* misuse of the API itself: a NULL pointer or a task index out of range */
};

typedef struct edgemtl_options {
  const char* backend; /* "auto" (NULL) or a backend name, e.g. "openvino" */
  int threads;         /* engine threads; 0: the backend's default */
  double pool_mb;      /* memory for warm engines (hot swaps); <= 0: 256 */
} edgemtl_options;

/* The message of the last failed call on this thread ("" if none). */
const char* edgemtl_last_error(void);

/* Loads and validates a bundle and activates its first grid point. options may be NULL. */
int edgemtl_open(const char* bundle, const edgemtl_options* options, edgemtl_runtime** out);
void edgemtl_close(edgemtl_runtime* rt);

/* The backend in use ("openvino", ...) and the number of tasks (outputs). */
const char* edgemtl_backend(const edgemtl_runtime* rt);
int edgemtl_num_tasks(const edgemtl_runtime* rt);
const char* edgemtl_task_name(const edgemtl_runtime* rt, int task);

/* The engine input (1, C, H, W) and task `task`'s output shape: up to max_dims dims into
 * dims; returns the number of dims, or -1 (see edgemtl_last_error). */
int edgemtl_input_shape(const edgemtl_runtime* rt, int64_t dims[4]);
int edgemtl_output_shape(const edgemtl_runtime* rt, int task, int64_t* dims, int max_dims);
/* Floats in task `task`'s output buffer (0 on a bad task). */
size_t edgemtl_output_size(const edgemtl_runtime* rt, int task);

/* Switches to the grid point nearest to (r[0..n), c); with wait = 0 it returns at once and
 * loads on a background thread while runs continue on the current sub-network. */
int edgemtl_set_preference(edgemtl_runtime* rt, const double* r, size_t n, double c, int wait);
/* Blocks until the latest set_preference/set_budget request took effect or was overtaken;
 * EDGEMTL_ERROR (with the reason) if that load failed. For requests made with wait = 0. */
int edgemtl_wait(edgemtl_runtime* rt);

/* The most capable point whose calibrated latency on this machine fits budget_ms (for the
 * latest task weights); needs `runtime calibrate` for this backend. */
int edgemtl_set_budget(edgemtl_runtime* rt, double budget_ms, int wait);

/* Runs one preprocessed (1, C, H, W) float32 input into the caller's output buffers
 * (one per task, edgemtl_output_size floats each). */
int edgemtl_run(edgemtl_runtime* rt, const float* input, float* const* outputs);
/* Runs one HxWx3 uint8 frame in colour order "RGB" or "BGR", preprocessed as trained. */
int edgemtl_run_frame(edgemtl_runtime* rt, const uint8_t* hwc, int height, int width, const char* colour_order,
                      float* const* outputs);

/* The grid point whose engine ran the latest call (the active one before any call):
 * its name (truncated to name_len - 1) and its 16-hex signature. */
int edgemtl_current(const edgemtl_runtime* rt, char* name, size_t name_len, char signature[17]);

/* Statistics as JSON (the Python runtime's stats(): calls, call_ms/engine_ms percentiles,
 * swaps, pool). Writes up to len bytes with a terminating NUL; returns the length needed
 * (including the NUL), so a call with len 0 sizes the buffer. */
size_t edgemtl_stats_json(const edgemtl_runtime* rt, char* buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* EDGEMTL_H */

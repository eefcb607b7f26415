/* The C API from C: open, shapes, preference, run into caller buffers, stats, errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgemtl/edgemtl.h"

static int failures = 0;
#define CHECK(cond, what)                                         \
  do {                                                            \
    if (!(cond)) {                                                \
      fprintf(stderr, "FAILED: %s (%s)\n", what, edgemtl_last_error()); \
      ++failures;                                                 \
    }                                                             \
  } while (0)

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s BUNDLE\n", argv[0]);
    return 2;
  }
  edgemtl_runtime* rt = NULL;
  CHECK(edgemtl_open("/nonexistent-bundle", NULL, &rt) == EDGEMTL_ERROR, "a missing bundle is an error");
  CHECK(strstr(edgemtl_last_error(), "not a bundle") != NULL, "the message says why");
  CHECK(rt == NULL, "no handle on failure");

  edgemtl_options options = {"openvino", 1, 64};
  CHECK(edgemtl_open(argv[1], &options, &rt) == EDGEMTL_OK, "open");
  if (rt == NULL) return 1;
  CHECK(strcmp(edgemtl_backend(rt), "openvino") == 0, "backend");
  const int n = edgemtl_num_tasks(rt);
  CHECK(n == 3 && strcmp(edgemtl_task_name(rt, 0), "semseg") == 0, "tasks");
  int64_t in[4];
  CHECK(edgemtl_input_shape(rt, in) == 4 && in[0] == 1 && in[1] == 3, "input shape");

  double r[3] = {0.2, 0.2, 0.6};
  CHECK(edgemtl_set_preference(rt, r, 3, 1.0, 1) == EDGEMTL_OK, "set_preference");
  CHECK(edgemtl_set_preference(rt, r, 2, 1.0, 1) == EDGEMTL_ERROR, "a short r is refused");
  CHECK(strstr(edgemtl_last_error(), "r must have 3 entries") != NULL, "and named");
  CHECK(edgemtl_run(rt, NULL, NULL) == EDGEMTL_INVALID_ARGUMENT, "NULL input");

  const size_t pixels = (size_t)(in[1] * in[2] * in[3]);
  float* x = calloc(pixels, sizeof(float));
  float* outs[3];
  for (int t = 0; t < n; ++t) {
    int64_t dims[8];
    const int nd = edgemtl_output_shape(rt, t, dims, 8);
    CHECK(nd >= 2 && dims[0] == 1, "output shape");
    outs[t] = malloc(edgemtl_output_size(rt, t) * sizeof(float));
  }
  CHECK(edgemtl_run(rt, x, outs) == EDGEMTL_OK, "run");
  CHECK(isfinite(outs[0][0]), "finite output");
  unsigned char* frame = calloc(48 * 64 * 3, 1);
  CHECK(edgemtl_run_frame(rt, frame, 48, 64, "BGR", outs) == EDGEMTL_OK, "run_frame resizes");
  char name[64], sig[17];
  CHECK(edgemtl_current(rt, name, sizeof name, sig) == EDGEMTL_OK && strlen(sig) == 16, "current");
  CHECK(strcmp(name, "r=0.2,0.2,0.6;c=0.0") == 0, "current: the nearest grid point (the grid has c = 0 only)");

  const size_t need = edgemtl_stats_json(rt, NULL, 0);
  char* stats = malloc(need);
  CHECK(edgemtl_stats_json(rt, stats, need) == need && strstr(stats, "\"calls\":2") != NULL, "stats count both calls");
  CHECK(edgemtl_set_budget(rt, -1.0, 1) == EDGEMTL_ERROR, "a negative budget is refused");
  double r2[3] = {0.6, 0.2, 0.2};
  CHECK(edgemtl_set_preference(rt, r2, 3, 0.0, 0) == EDGEMTL_OK, "a background swap returns at once");
  CHECK(edgemtl_wait(rt) == EDGEMTL_OK, "edgemtl_wait");
  CHECK(edgemtl_run(rt, x, outs) == EDGEMTL_OK && edgemtl_current(rt, name, sizeof name, sig) == EDGEMTL_OK &&
            strcmp(name, "r=0.6,0.2,0.2;c=0.0") == 0,
        "after the wait, calls run on the new point");

  edgemtl_close(rt);
  free(stats), free(frame), free(x);
  for (int t = 0; t < n; ++t) free(outs[t]);
  if (failures == 0) printf("C API: all checks passed\n");
  return failures == 0 ? 0 : 1;
}

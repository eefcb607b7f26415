// The C API (edgemtl.h) over edgemtl::Runtime: exceptions stop here and become a status
// code plus a per-thread message.
#include <cstring>

#include "edgemtl/edgemtl.h"
#include "edgemtl/runtime.hpp"

struct edgemtl_runtime {
  std::unique_ptr<edgemtl::Runtime> rt;
  mutable std::mutex last_mutex;
  edgemtl::Selection last;  // what the latest call ran on
  bool ran = false;
  std::shared_ptr<edgemtl::Swap> requested;  // the latest swap request (edgemtl_wait)
};

namespace {

thread_local std::string last_error;

template <class F>
int guarded(F&& body) {
  try {
    body();
    last_error.clear();
    return EDGEMTL_OK;
  } catch (const std::invalid_argument& exc) {
    last_error = exc.what();
    return EDGEMTL_INVALID_ARGUMENT;
  } catch (const std::exception& exc) {
    last_error = exc.what();
    return EDGEMTL_ERROR;
  } catch (...) {  // nothing may cross the C boundary
    last_error = "unknown C++ exception";
    return EDGEMTL_ERROR;
  }
}

void need(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(what);
}

std::vector<float*> buffers(const edgemtl_runtime* h, float* const* outputs) {
  need(outputs != nullptr, "outputs must point to one buffer per task");
  std::vector<float*> out(outputs, outputs + h->rt->manifest().tasks.size());
  for (auto* p : out) need(p != nullptr, "every output buffer must be non-NULL");
  return out;
}

void remember(edgemtl_runtime* h, const edgemtl::Selection& sel) {
  std::lock_guard<std::mutex> lock(h->last_mutex);
  h->last = sel;
  h->ran = true;
}

}  // namespace

extern "C" {

const char* edgemtl_last_error(void) { return last_error.c_str(); }

int edgemtl_open(const char* bundle, const edgemtl_options* options, edgemtl_runtime** out) {
  return guarded([&] {
    need(bundle != nullptr && out != nullptr, "bundle and out must be non-NULL");
    *out = nullptr;
    edgemtl::Options o;
    if (options != nullptr) {
      o.backend = options->backend ? options->backend : "auto";
      o.threads = options->threads;
      if (options->pool_mb > 0) o.pool_mb = options->pool_mb;
    }
    auto h = std::make_unique<edgemtl_runtime>();
    h->rt = std::make_unique<edgemtl::Runtime>(bundle, o);
    *out = h.release();
  });
}

void edgemtl_close(edgemtl_runtime* rt) { delete rt; }

const char* edgemtl_backend(const edgemtl_runtime* rt) { return rt ? rt->rt->backend().c_str() : ""; }

int edgemtl_num_tasks(const edgemtl_runtime* rt) { return rt ? static_cast<int>(rt->rt->manifest().tasks.size()) : 0; }

const char* edgemtl_task_name(const edgemtl_runtime* rt, int task) {
  if (!rt || task < 0 || task >= edgemtl_num_tasks(rt)) return nullptr;
  return rt->rt->manifest().tasks[static_cast<size_t>(task)].name.c_str();
}

int edgemtl_input_shape(const edgemtl_runtime* rt, int64_t dims[4]) {
  int n = -1;
  guarded([&] {
    need(rt != nullptr && dims != nullptr, "rt and dims must be non-NULL");
    const auto& s = rt->rt->manifest().input.shape;
    dims[0] = 1, dims[1] = s[0], dims[2] = s[1], dims[3] = s[2];
    n = 4;
  });
  return n;
}

int edgemtl_output_shape(const edgemtl_runtime* rt, int task, int64_t* dims, int max_dims) {
  int n = -1;
  guarded([&] {
    need(rt != nullptr && dims != nullptr, "rt and dims must be non-NULL");
    need(task >= 0 && task < edgemtl_num_tasks(rt), "task index out of range");
    const auto shape = rt->rt->output_shapes().at(static_cast<size_t>(task));
    need(static_cast<int>(shape.size()) <= max_dims, "max_dims is smaller than the output's rank");
    std::copy(shape.begin(), shape.end(), dims);
    n = static_cast<int>(shape.size());
  });
  return n;
}

size_t edgemtl_output_size(const edgemtl_runtime* rt, int task) {
  size_t n = 0;
  guarded([&] {
    need(rt != nullptr && task >= 0 && task < edgemtl_num_tasks(rt), "task index out of range");
    n = edgemtl::numel(rt->rt->output_shapes().at(static_cast<size_t>(task)));
  });
  return n;
}

int edgemtl_set_preference(edgemtl_runtime* rt, const double* r, size_t n, double c, int wait) {
  return guarded([&] {
    need(rt != nullptr && r != nullptr, "rt and r must be non-NULL");
    auto swap = rt->rt->set_preference(std::vector<double>(r, r + n), c, wait != 0);
    std::lock_guard<std::mutex> lock(rt->last_mutex);
    rt->requested = swap;
  });
}

int edgemtl_set_budget(edgemtl_runtime* rt, double budget_ms, int wait) {
  return guarded([&] {
    need(rt != nullptr, "rt must be non-NULL");
    auto swap = rt->rt->set_budget(budget_ms, std::nullopt, wait != 0);
    std::lock_guard<std::mutex> lock(rt->last_mutex);
    rt->requested = swap;
  });
}

int edgemtl_wait(edgemtl_runtime* rt) {
  return guarded([&] {
    need(rt != nullptr, "rt must be non-NULL");
    std::shared_ptr<edgemtl::Swap> swap;
    {
      std::lock_guard<std::mutex> lock(rt->last_mutex);
      swap = rt->requested;
    }
    if (swap) swap->wait();
  });
}

int edgemtl_run(edgemtl_runtime* rt, const float* input, float* const* outputs) {
  return guarded([&] {
    need(rt != nullptr && input != nullptr, "rt and input must be non-NULL");
    remember(rt, rt->rt->run(input, buffers(rt, outputs)));
  });
}

int edgemtl_run_frame(edgemtl_runtime* rt, const uint8_t* hwc, int height, int width, const char* colour_order,
                      float* const* outputs) {
  return guarded([&] {
    need(rt != nullptr && hwc != nullptr, "rt and hwc must be non-NULL");
    remember(rt, rt->rt->run_frame(hwc, height, width, colour_order ? colour_order : "RGB", buffers(rt, outputs)));
  });
}

int edgemtl_current(const edgemtl_runtime* rt, char* name, size_t name_len, char signature[17]) {
  return guarded([&] {
    need(rt != nullptr, "rt must be non-NULL");
    edgemtl::Selection sel;
    {
      std::lock_guard<std::mutex> lock(rt->last_mutex);
      sel = rt->ran ? rt->last : rt->rt->current();
    }
    if (name != nullptr && name_len > 0) {
      std::strncpy(name, sel.entry->name.c_str(), name_len - 1);
      name[name_len - 1] = '\0';
    }
    if (signature != nullptr) std::snprintf(signature, 17, "%s", sel.entry->signature.c_str());
  });
}

size_t edgemtl_stats_json(const edgemtl_runtime* rt, char* buf, size_t len) {
  std::string text;
  guarded([&] {
    need(rt != nullptr, "rt must be non-NULL");
    text = rt->rt->stats().dump();
  });
  if (buf != nullptr && len > 0) {
    std::strncpy(buf, text.c_str(), len - 1);
    buf[len - 1] = '\0';
  }
  return text.size() + 1;
}

}  // extern "C"

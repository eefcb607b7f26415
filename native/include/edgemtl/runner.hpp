// The runner interface every native backend implements (runtime/backends/base.py's
// Runner, in C++): one engine, a weight set bound by `bind`, runs into caller buffers.
// Backends are rows of one table (`backends()`), highest priority first; a backend
// whose SDK was not found at configure time is absent from the table, and
// `unavailable_backends()` says why.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "edgemtl/family.hpp"

namespace edgemtl {

struct RunnerOptions {
  int threads = 0;          // intra-op threads; 0: the backend's default
  std::string precision;    // the engine's precision (manifest), e.g. fp32, bf16, fp16
};

// Runs one engine. Not thread-safe: the runtime serialises calls per runner.
class Runner {
 public:
  virtual ~Runner() = default;
  // Binds a weight set (by initializer name); on failure the previous one stays bound.
  virtual void bind(const WeightSet& weights) = 0;
  // Runs one (1, C, H, W) float32 input; outputs[i] holds numel(output_shapes()[i]) floats.
  virtual void run(const float* input, const std::vector<float*>& outputs) = 0;
  virtual const std::vector<Shape>& output_shapes() const = 0;
};

struct Backend {
  std::string name;
  int priority;            // "auto": usable backends with engines in the bundle, highest first
  bool rebinds_in_place;   // a new weight set on a loaded engine is cheap (TensorRT refit)
  std::pair<bool, std::string> (*available)();  // (usable here, why)
  std::unique_ptr<Runner> (*open)(const fs::path& engine, const Shape& input, const RunnerOptions& options);
};

// Caller-owned output buffers sized for `shapes`, and the pointers run() writes through.
struct OutputBuffers {
  std::vector<std::vector<float>> data;
  std::vector<float*> ptrs;
  explicit OutputBuffers(const std::vector<Shape>& shapes = {}) { resize(shapes); }
  void resize(const std::vector<Shape>& shapes) {  // keeps the storage of buffers that fit
    data.resize(shapes.size());
    ptrs.clear();
    for (size_t i = 0; i < shapes.size(); ++i) ptrs.push_back((data[i].resize(numel(shapes[i])), data[i].data()));
  }
};

const std::vector<Backend>& backends();
const Backend& get_backend(const std::string& name);  // Error naming the compiled-in ones
std::vector<std::string> unavailable_backends();     // "tensorrt: not found at build time (...)"

// Rows of the table, defined by each backend's source file.
Backend openvino_backend();
#ifdef EDGEMTL_WITH_TENSORRT
Backend tensorrt_backend();
#endif

}  // namespace edgemtl

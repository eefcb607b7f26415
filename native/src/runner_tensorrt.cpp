// TensorRT (NVIDIA GPUs, Jetson): the C++ counterpart of runtime/backends/tensorrt.py,
// for the same engine files. A plan is weight-stripped and refittable (STRIP_PLAN +
// REFIT_INDIVIDUAL, every graph parameter refittable by its initializer name); `bind`
// refits a folded weight set into the loaded engine in place, `run` copies the image to
// the device, enqueues and copies the outputs back into the caller's buffers.
//
// Untested here (no GPU, no TensorRT on the development machine): written to the
// documented TensorRT 10.x C++ API (NvInferRuntime.h; the calls used are unchanged in
// 11.x) and the CUDA runtime API, and only syntax-checked against the 10.0, 10.16 and
// 11.1 headers. CMake compiles this file only where it found TensorRT.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <set>
#include <type_traits>

#include "edgemtl/runner.hpp"

namespace edgemtl {

namespace {

using nvinfer1::DataType;

void check_cuda(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    throw Error("tensorrt: CUDA call " + what + " failed: " + cudaGetErrorString(status));
  }
}

std::string trt_version() {
  return std::to_string(getInferLibMajorVersion()) + "." + std::to_string(getInferLibMinorVersion()) + "." +
         std::to_string(getInferLibPatchVersion());
}

std::string dtype_name(DataType type) {
  switch (type) {
    case DataType::kFLOAT: return "float32";
    case DataType::kHALF: return "float16";
    case DataType::kBF16: return "bfloat16";
    case DataType::kINT8: return "int8";
    case DataType::kINT32: return "int32";
    case DataType::kINT64: return "int64";
    case DataType::kUINT8: return "uint8";
    case DataType::kBOOL: return "bool";
    default: return "DataType " + std::to_string(static_cast<int>(type));
  }
}

// float32 -> float16 bits, round to nearest even (numpy's astype(float16), which
// tensorrt.py applies when the engine's weight prototype is half: 11.x fp16 graphs).
uint16_t to_half(float value) {
  uint32_t u;
  std::memcpy(&u, &value, sizeof u);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint16_t out;
  if (u >= (127u + 16u) << 23) {  // |value| >= 65536, inf or nan
    out = u > (255u << 23) ? 0x7e00 : 0x7c00;
  } else if (u < (113u << 23)) {  // below the smallest normal half: let the FPU round
    const uint32_t magic_bits = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    float magic, f;
    std::memcpy(&magic, &magic_bits, sizeof magic);
    std::memcpy(&f, &u, sizeof f);
    f += magic;
    std::memcpy(&u, &f, sizeof u);
    out = static_cast<uint16_t>(u - magic_bits);
  } else {  // normal: rebias the exponent, round the mantissa half to even
    const uint32_t odd = (u >> 13) & 1u;
    u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;
    out = static_cast<uint16_t>(u >> 13);
  }
  return static_cast<uint16_t>(out | (sign >> 16));
}

// Keeps TensorRT's warnings and errors (thread-safe, as ILogger must be); `detail()`
// hands the ones logged since the last call to an exception text.
class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity > Severity::kWARNING || msg == nullptr) return;
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      messages_.emplace_back((severity == Severity::kWARNING ? "warning: " : "error: ") + std::string(msg));
      if (messages_.size() > kKeep) messages_.pop_front();
    } catch (...) {  // logging must not throw into TensorRT
    }
  }

  std::string detail() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    for (const auto& m : messages_) out += (out.empty() ? " (TensorRT: " : "; ") + m;
    messages_.clear();
    return out.empty() ? out : out + ")";
  }

 private:
  static constexpr size_t kKeep = 8;
  std::mutex mutex_;
  std::deque<std::string> messages_;
};

struct CudaFree {
  void operator()(void* ptr) const noexcept { cudaFree(ptr); }
};
using DevicePtr = std::unique_ptr<void, CudaFree>;

struct StreamDestroy {
  void operator()(cudaStream_t stream) const noexcept { cudaStreamDestroy(stream); }
};
using Stream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy>;

struct IOTensor {
  std::string name;
  Shape shape;
  size_t bytes = 0;
  DevicePtr device;
};

std::vector<char> read_plan(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw Error("tensorrt: cannot read engine " + path.string());
  if (bytes.empty()) throw Error("tensorrt: engine " + path.string() + " is missing or empty");
  return bytes;
}

// Drops leading 1s: the runtime's (1, C, H, W) and an engine's shape compare equal either way.
Shape squeezed(Shape shape) {
  while (shape.size() > 1 && shape.front() == 1) shape.erase(shape.begin());
  return shape;
}

// TensorRT uses the first ILogger passed to it for the whole process (NVIDIA/TensorRT#1475):
// one logger that outlives every runner, so no runner's messages go to a destroyed one.
Logger& process_logger() {
  static Logger logger;
  return logger;
}

class TensorRTRunner : public Runner {
 public:
  // `options.threads` is unused: TensorRT has no host thread pool.
  TensorRTRunner(const fs::path& engine, const Shape& input, const RunnerOptions& options) : path_(engine.string()) {
    if (options.precision != "fp32" && options.precision != "fp16") {
      throw Error("tensorrt: engine precision must be fp32 or fp16, found '" + options.precision + "'");
    }
    load(engine);
    allocate();
    if (squeezed(inputs_.front().shape) != squeezed(input)) {
      throw Error("tensorrt: engine input '" + inputs_.front().name + "' has shape " +
                  shape_repr(inputs_.front().shape) + ", expected " + shape_repr(input));
    }
  }

  ~TensorRTRunner() override {
    if (stream_) cudaStreamSynchronize(stream_.get());  // no pending copy outlives its buffers
  }

  // Mirrors tensorrt.py's _bind/_refit. Checks run before anything is written, so a
  // refused weight set leaves the previous one bound; a failed refitCudaEngine may
  // have refitted a subset (TensorRT's contract), so the runner refuses to run until
  // a weight set binds again.
  void bind(const WeightSet& weights) override {
    if (!engine_->isRefittable()) {
      throw Error("tensorrt: " + path_ + " is not a refittable plan; it cannot bind a weight set");
    }
    check_cuda(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize");
    logger_.detail();  // forget older messages
    std::unique_ptr<nvinfer1::IRefitter> refitter(nvinfer1::createInferRefitter(*engine_, logger_));
    if (!refitter) throw Error("tensorrt: cannot create a refitter for " + path_ + logger_.detail());
    check_known(*refitter, weights);
    std::vector<std::vector<uint16_t>> keep;  // converted host copies: live until the refit returns
    for (const auto& [name, array] : weights) set_weights(*refitter, name, array, keep);
    check_missing(*refitter);
    bound_ = false;
    if (!refitter->refitCudaEngine()) throw Error("tensorrt: refitCudaEngine failed" + logger_.detail());
    bound_ = true;
    create_context();
  }

  void run(const float* input, const std::vector<float*>& outputs) override {
    if (outputs.size() != outputs_.size()) {
      throw Error("tensorrt: expected " + std::to_string(outputs_.size()) + " output buffers, found " +
                  std::to_string(outputs.size()));
    }
    if (!bound_ && engine_->isRefittable()) {
      throw Error("tensorrt: " + path_ + " is a refittable plan; bind a weight set to run it");
    }
    create_context();
    const IOTensor& in = inputs_.front();
    enqueue(cudaMemcpyAsync(in.device.get(), input, in.bytes, cudaMemcpyHostToDevice, stream_.get()),
            "cudaMemcpyAsync (input)");
    for (const auto* group : {&inputs_, &outputs_}) {
      for (const auto& t : *group) {
        if (!context_->setTensorAddress(t.name.c_str(), t.device.get())) {
          fail("tensorrt: setTensorAddress failed for '" + t.name + "'" + logger_.detail());
        }
      }
    }
    if (!context_->enqueueV3(stream_.get())) fail("tensorrt: enqueueV3 failed" + logger_.detail());
    for (size_t i = 0; i < outputs_.size(); ++i) {
      const IOTensor& out = outputs_[i];
      enqueue(cudaMemcpyAsync(outputs[i], out.device.get(), out.bytes, cudaMemcpyDeviceToHost, stream_.get()),
              "cudaMemcpyAsync (output '" + out.name + "')");
    }
    check_cuda(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize");
  }

  const std::vector<Shape>& output_shapes() const override { return output_shapes_; }

 private:
  void load(const fs::path& engine) {
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error("tensorrt: cannot create the runtime" + logger_.detail());
    const std::vector<char> plan = read_plan(engine);
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_) {
      throw Error("tensorrt: cannot deserialize " + path_ +
                  " (built by another TensorRT version or for another GPU?)" + logger_.detail());
    }
    cudaStream_t stream = nullptr;
    check_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
    stream_.reset(stream);
  }

  // One device buffer per I/O tensor, in the engine's I/O order: its outputs come in
  // the order the ONNX graph declares them, as tensorrt.py's `outputs` list.
  void allocate() {
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      IOTensor t{name, tensor_shape(name), 0, nullptr};
      if (engine_->getTensorDataType(name) != DataType::kFLOAT) {
        throw Error("tensorrt: tensor '" + t.name + "' of " + path_ + " is " +
                    dtype_name(engine_->getTensorDataType(name)) + ", expected float32");
      }
      t.bytes = numel(t.shape) * sizeof(float);
      void* ptr = nullptr;
      check_cuda(cudaMalloc(&ptr, t.bytes), "cudaMalloc (" + std::to_string(t.bytes) + " bytes for '" + t.name + "')");
      t.device.reset(ptr);
      const bool is_input = engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
      if (!is_input) output_shapes_.push_back(t.shape);
      (is_input ? inputs_ : outputs_).push_back(std::move(t));
    }
    if (inputs_.empty() || outputs_.empty()) {
      throw Error("tensorrt: " + path_ + " has " + std::to_string(inputs_.size()) + " inputs and " +
                  std::to_string(outputs_.size()) + " outputs; expected an image input and task outputs");
    }
  }

  Shape tensor_shape(const char* name) const {
    const nvinfer1::Dims dims = engine_->getTensorShape(name);
    Shape shape(dims.d, dims.d + std::max<int32_t>(dims.nbDims, 0));
    for (auto d : shape) {
      if (d < 0) {
        throw Error("tensorrt: tensor '" + std::string(name) + "' of " + path_ + " has a dynamic shape " +
                    shape_repr(shape) + "; engines are built with static shapes");
      }
    }
    return shape;
  }

  // tensorrt.py builds its context after the first refit: a weight-stripped engine has
  // no weights before it.
  void create_context() {
    if (context_) return;
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error("tensorrt: cannot create an execution context for " + path_ + logger_.detail());
  }

  static std::vector<std::string> names(int32_t count, const std::function<int32_t(int32_t, const char**)>& get) {
    std::vector<const char*> raw(static_cast<size_t>(std::max<int32_t>(count, 0)), nullptr);
    if (!raw.empty()) get(count, raw.data());
    std::vector<std::string> out;
    for (const char* n : raw) out.emplace_back(n ? n : "<unnamed>");
    return out;
  }

  void check_known(nvinfer1::IRefitter& refitter, const WeightSet& weights) const {
    const auto all = names(refitter.getAllWeights(0, nullptr),
                           [&](int32_t n, const char** out) { return refitter.getAllWeights(n, out); });
    const std::set<std::string> refittable(all.begin(), all.end());
    json unknown = json::array();
    for (const auto& entry : weights) {
      if (!refittable.count(entry.first) && unknown.size() < 3) unknown.push_back(entry.first);
    }
    if (!unknown.empty()) {
      throw Error("tensorrt: engine has no refittable weights named " + repr(unknown) +
                  " (was it built with REFIT from this signature's graph?)");
    }
  }

  void set_weights(nvinfer1::IRefitter& refitter, const std::string& name, const Array& array,
                   std::vector<std::vector<uint16_t>>& keep) {
    const std::string who =
        "tensorrt: refit rejected weights " + repr(json(name)) + " (shape " + shape_repr(array.shape) + ")";
    const nvinfer1::Weights proto = refitter.getWeightsPrototype(name.c_str());
    if (proto.count != static_cast<int64_t>(array.numel())) {
      throw Error(who + ": the engine expects " + std::to_string(proto.count) + " values");
    }
    const float* values = array.f32(name);
    nvinfer1::Weights w{DataType::kFLOAT, values, proto.count};
    if (proto.type == DataType::kHALF) {  // the engine's own weight dtype, as tensorrt.py
      keep.emplace_back(array.numel());
      for (size_t i = 0; i < keep.back().size(); ++i) keep.back()[i] = to_half(values[i]);
      w = nvinfer1::Weights{DataType::kHALF, keep.back().data(), proto.count};
    } else if (proto.type != DataType::kFLOAT) {
      throw Error(who + ": the engine holds them as " + dtype_name(proto.type) + "; float32 and float16 refit only");
    }
    if (!refitter.setNamedWeights(name.c_str(), w)) throw Error(who + logger_.detail());
  }

  void check_missing(nvinfer1::IRefitter& refitter) {
    const auto missing = names(refitter.getMissingWeights(0, nullptr),
                               [&](int32_t n, const char** out) { return refitter.getMissingWeights(n, out); });
    if (missing.empty()) return;
    json first = json::array();
    for (size_t i = 0; i < missing.size() && i < 3; ++i) first.push_back(missing[i]);
    throw Error("tensorrt: refit lacks weights " + repr(first));
  }

  // After an enqueue failure, waits for the copies already queued (they read the
  // caller's buffers) before throwing.
  [[noreturn]] void fail(const std::string& message) {
    cudaStreamSynchronize(stream_.get());
    throw Error(message);
  }

  void enqueue(cudaError_t status, const std::string& what) {
    if (status != cudaSuccess) fail("tensorrt: CUDA call " + what + " failed: " + cudaGetErrorString(status));
  }

  // Declaration order is destruction order reversed: buffers and stream go first, the
  // logger last (TensorRT objects use it until they are deleted).
  std::string path_;
  Logger& logger_ = process_logger();  // TensorRT keeps the first logger it is given, process-wide
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  Stream stream_;
  std::vector<IOTensor> inputs_, outputs_;
  std::vector<Shape> output_shapes_;
  bool bound_ = false;
};

std::pair<bool, std::string> available() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return {false, std::string("no usable CUDA device: ") + cudaGetErrorString(status)};
  if (count < 1) return {false, "no CUDA device is visible"};
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    return {false, std::string("cannot query CUDA device ") + std::to_string(device)};
  }
  return {true, "tensorrt " + trt_version() + " on " + prop.name};
}

std::unique_ptr<Runner> open(const fs::path& engine, const Shape& input, const RunnerOptions& options) {
  return std::make_unique<TensorRTRunner>(engine, input, options);
}

}  // namespace

Backend tensorrt_backend() { return {"tensorrt", 20, true, available, open}; }

}  // namespace edgemtl

// OpenVINO (CPU): the engine is the ONNX graph whose weights are graph inputs
// (runtime/backends/openvino.py writes it). The graph is read once; binding a weight
// set replaces those inputs with constants and compiles, so OpenVINO folds and
// reorders the real weights exactly as the Python runner does.
#include <mutex>

#include <openvino/op/constant.hpp>
#include <openvino/op/parameter.hpp>
#include <openvino/openvino.hpp>

#include "edgemtl/runner.hpp"
#include "openvino_model.hpp"

namespace edgemtl {

namespace {

ov::Core& core() {  // plugins load once per process; Core is thread-safe for compile_model
  static ov::Core instance;
  return instance;
}

class OpenVINORunner : public Runner {
 public:
  OpenVINORunner(const fs::path& engine, const Shape& input, const RunnerOptions& options)
      : input_shape_(input.begin(), input.end()), options_(options) {
    try {
      model_ = core().read_model(engine.string());
    } catch (const ov::Exception& exc) {
      throw Error("openvino: cannot load engine " + engine.string() + ": " + first_line(exc.what()));
    }
    const std::vector<std::string> format_key = {"framework", "edgemtl.openvino.engine_format"};
    const std::string format = model_->has_rt_info(format_key) ? model_->get_rt_info<std::string>(format_key) : "1";
    if (format != "2") {
      throw Error("openvino: engine " + engine.string() + " has engine format " + format +
                  ", this runtime reads 2: rebuild the bundle with compiler >= 0.3.0");
    }
    if (options.precision != "fp32" && options.precision != "bf16") {
      throw Error("openvino: engine precision must be fp32 or bf16, found '" + options.precision + "'");
    }
  }

  void bind(const WeightSet& weights) override {
    const auto model = with_weights(*model_, weights);
    const ov::AnyMap config = compile_config(options_.precision, options_.threads);
    ov::CompiledModel compiled;
    try {
      compiled = core().compile_model(model, "CPU", config);
    } catch (const ov::Exception& exc) {
      throw Error("openvino: cannot compile the engine: " + first_line(exc.what()));
    }
    std::vector<Shape> shapes;
    for (const auto& out : compiled.outputs()) {
      const auto s = out.get_shape();
      shapes.emplace_back(s.begin(), s.end());
    }
    request_ = compiled.create_infer_request();
    compiled_ = compiled;
    output_shapes_ = std::move(shapes);
    bound_input_ = nullptr;
    bound_outputs_.clear();
  }

  void run(const float* input, const std::vector<float*>& outputs) override {
    if (outputs.size() != output_shapes_.size()) {
      throw Error("openvino: expected " + std::to_string(output_shapes_.size()) + " output buffers, found " +
                  std::to_string(outputs.size()));
    }
    if (input != bound_input_ || outputs != bound_outputs_) wrap(input, outputs);
    request_.infer();
  }

  const std::vector<Shape>& output_shapes() const override { return output_shapes_; }

 private:
  // The caller's buffers become the request's tensors (no copies); a camera loop that
  // reuses its buffers pays this once, not per frame.
  void wrap(const float* input, const std::vector<float*>& outputs) {
    request_.set_input_tensor(ov::Tensor(ov::element::f32, input_shape_, const_cast<float*>(input)));
    for (size_t i = 0; i < outputs.size(); ++i) {
      const ov::Shape shape(output_shapes_[i].begin(), output_shapes_[i].end());
      request_.set_output_tensor(i, ov::Tensor(ov::element::f32, shape, outputs[i]));
    }
    bound_input_ = input;
    bound_outputs_ = outputs;
  }

  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

  std::shared_ptr<ov::Model> model_;
  ov::Shape input_shape_;
  RunnerOptions options_;
  ov::CompiledModel compiled_;
  ov::InferRequest request_;
  std::vector<Shape> output_shapes_;
  const float* bound_input_ = nullptr;  // the buffers the request's tensors wrap now
  std::vector<float*> bound_outputs_;
};

std::pair<bool, std::string> available() {
  try {
    const auto version = ov::get_openvino_version();
    core().get_property("CPU", ov::device::full_name);
    return {true, std::string("openvino ") + version.buildNumber + " (CPU)"};
  } catch (const std::exception& exc) {
    return {false, std::string("openvino cannot use the CPU here: ") + exc.what()};
  }
}

std::unique_ptr<Runner> open(const fs::path& engine, const Shape& input, const RunnerOptions& options) {
  return std::make_unique<OpenVINORunner>(engine, input, options);
}

}  // namespace

std::shared_ptr<ov::Model> with_weights(const ov::Model& engine, const WeightSet& weights) {
  auto model = engine.clone();
  const ov::ParameterVector params = model->get_parameters();  // a copy: removal edits the model's list
  for (size_t i = 1; i < params.size(); ++i) {  // input 0: the image
    const auto& param = params[i];
    auto it = weights.find(param->get_friendly_name());
    for (const auto& n : param->output(0).get_names()) it = it == weights.end() ? weights.find(n) : it;
    if (it == weights.end()) throw Error("openvino: the weight set lacks " + param->get_friendly_name());
    const std::string& name = it->first;
    if (param->get_element_type() != ov::element::f32) {
      throw Error("openvino: weight input " + name + " is " + param->get_element_type().get_type_name() + ", expected f32");
    }
    const ov::Shape shape(it->second.shape.begin(), it->second.shape.end());
    if (shape != param->get_partial_shape().to_shape()) {
      throw Error("openvino: weight " + name + " has shape " + shape.to_string() + ", expected " +
                  param->get_partial_shape().to_string());
    }
    ov::replace_node(param, std::make_shared<ov::op::v0::Constant>(ov::element::f32, shape, it->second.f32(name)));
    model->remove_parameter(param);
  }
  model->validate_nodes_and_infer_types();
  return model;
}

ov::AnyMap compile_config(const std::string& precision, int threads) {
  ov::AnyMap config = {ov::hint::inference_precision(precision == "bf16" ? ov::element::bf16 : ov::element::f32),
                       ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY)};
  if (threads > 0) config.emplace(ov::inference_num_threads(threads));
  return config;
}

Backend openvino_backend() { return {"openvino", 5, false, available, open}; }

}  // namespace edgemtl

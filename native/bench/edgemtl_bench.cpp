// edgemtl-bench: the native runtime's per-call latency on one grid point, next to a bare
// OpenVINO infer request on the same engine and weights (compiled the same way), calls
// interleaved in blocks so both see the same machine state. Prints one JSON object;
// `python -m benchmarks native` drives it beside the Python runtimes.
//
//   edgemtl-bench BUNDLE [--point NAME] [--threads N] [--repeats R] [--warmup W]
#include <chrono>
#include <cstdio>
#include <iostream>

#include <openvino/openvino.hpp>

#include "edgemtl/runtime.hpp"
#include "openvino_model.hpp"

namespace {

using edgemtl::json;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// The engine compiled straight with OpenVINO: weights as constants, the runner's config.
ov::InferRequest bare_request(edgemtl::Runtime& rt, const edgemtl::GridEntry& entry, int threads, const std::string& precision) {
  static ov::Core core;
  const auto engine = core.read_model(rt.engine_path(entry.signature).string());
  const auto model = edgemtl::with_weights(*engine, rt.weights(entry));
  return core.compile_model(model, "CPU", edgemtl::compile_config(precision, threads)).create_infer_request();
}

int bench(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << "usage: edgemtl-bench BUNDLE [--point NAME] [--threads N] [--repeats R] [--warmup W]\n";
    return argc < 2 ? 2 : 0;
  }
  std::string point;
  int threads = 0, repeats = 200, warmup = 20;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], v = argv[i + 1];
    if (flag == "--point") point = v;
    else if (flag == "--threads") threads = std::stoi(v);
    else if (flag == "--repeats") repeats = std::stoi(v);
    else if (flag == "--warmup") warmup = std::stoi(v);
    else throw edgemtl::Error("unknown option " + flag);
  }
  edgemtl::Options opts;
  opts.backend = "openvino";
  opts.threads = threads;
  edgemtl::Runtime rt(argv[1], opts);
  const auto& entry = point.empty() ? rt.manifest().grid.front() : rt.manifest().entry(point);
  rt.set_preference(entry.r, entry.c);
  const std::string& precision = rt.engine(entry.signature).precision;
  auto request = bare_request(rt, entry, threads, precision);
  const auto& s = rt.manifest().input.shape;
  std::vector<float> x(static_cast<size_t>(s[0] * s[1] * s[2]), 0.5f);
  std::copy(x.begin(), x.end(), request.get_input_tensor().data<float>());
  const edgemtl::OutputBuffers outs(rt.output_shapes());
  const auto& ptrs = outs.ptrs;
  std::vector<double> bare, native;
  for (int i = 0; i < warmup; ++i) request.infer(), rt.run(x.data(), ptrs);
  for (int block = 0; block < repeats; block += 10) {  // interleaved blocks of 10 calls each
    for (int i = 0; i < 10; ++i) {
      const auto t0 = Clock::now();
      request.infer();
      bare.push_back(ms_since(t0));
    }
    for (int i = 0; i < 10; ++i) {
      const auto t0 = Clock::now();
      rt.run(x.data(), ptrs);
      native.push_back(ms_since(t0));
    }
  }
  const json b = edgemtl::percentiles(bare), n = edgemtl::percentiles(native);
  const json out = {{"point", entry.name}, {"signature", entry.signature}, {"threads", threads}, {"precision", precision},
                    {"repeats", native.size()}, {"bare_ms", b}, {"native_ms", n},
                    {"overhead_us", (n["p50"].get<double>() - b["p50"].get<double>()) * 1e3}};
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return bench(argc, argv);
  } catch (const std::exception& exc) {
    std::fprintf(stderr, "edgemtl-bench: error: %s\n", exc.what());
    return 2;
  }
}

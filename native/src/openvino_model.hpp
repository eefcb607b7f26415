// How an OpenVINO engine (engine format 2: weights as graph inputs after the image) becomes
// a compilable model: shared by the runner and by edgemtl-bench's bare-request baseline, so
// the baseline compiles exactly the graph the runtime runs. Private to the build tree.
#pragma once

#include <memory>

#include <openvino/openvino.hpp>

#include "edgemtl/family.hpp"

namespace edgemtl {

// A clone of `engine` with every weight input replaced by a Constant holding that weight
// (Error naming a missing weight, a non-f32 input or a wrong shape).
std::shared_ptr<ov::Model> with_weights(const ov::Model& engine, const WeightSet& weights);

// The CPU plugin's config for an engine precision ("fp32" pins f32, "bf16") and thread count.
ov::AnyMap compile_config(const std::string& precision, int threads);

}  // namespace edgemtl

#include <algorithm>

#include "edgemtl/runner.hpp"

namespace edgemtl {

const std::vector<Backend>& backends() {
  static const std::vector<Backend> table = [] {
    std::vector<Backend> rows = {openvino_backend()};
#ifdef EDGEMTL_WITH_TENSORRT
    rows.push_back(tensorrt_backend());
#endif
    std::sort(rows.begin(), rows.end(), [](const Backend& a, const Backend& b) { return a.priority > b.priority; });
    return rows;
  }();
  return table;
}

std::vector<std::string> unavailable_backends() {
  std::vector<std::string> out;
#ifndef EDGEMTL_WITH_TENSORRT
  out.push_back("tensorrt: not built (CMake did not find TensorRT; configure with -DTensorRT_ROOT=... on a machine that has it)");
#endif
  return out;
}

const Backend& get_backend(const std::string& name) {
  std::string known;
  for (const auto& b : backends()) {
    if (b.name == name) return b;
    known += (known.empty() ? "'" : ", '") + b.name + "'";
  }
  std::string why;
  for (const auto& u : unavailable_backends()) {
    if (u.rfind(name + ":", 0) == 0) why = "; " + u;
  }
  throw Error("unknown backend '" + name + "'; this build has [" + known + "]" + why);
}

}  // namespace edgemtl

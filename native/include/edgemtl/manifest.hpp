// The bundle manifest (runtime/manifest.py): same format version, same refusals,
// same path confinement. Every path and id is checked here, before anything opens it.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "edgemtl/common.hpp"

namespace edgemtl {

constexpr const char* kFormat = "edgemtl.bundle";
constexpr int kFormatVersion = 3;  // must equal runtime/manifest.py FORMAT_VERSION
constexpr const char* kFirstCompiler = "0.3.0";  // the compiler release that first wrote it
constexpr uintmax_t kMaxManifestBytes = uintmax_t(64) << 20;
constexpr int kMaxSide = 16384;

struct InputSpec {
  std::array<int, 3> shape{};  // C, H, W
  std::string colour_order = "RGB";
  double scale = 1.0 / 255;
  std::vector<double> mean, std;
};

struct TaskInfo {
  std::string name, kind;
  int channels = 0;
};

struct EngineRef {
  std::string backend, precision, device, key, path, sha256;
};

struct SignatureInfo {
  std::string signature;
  json spec;  // the family's canonical sub-network spec
  int64_t params = 0;
  double flops = 0;
  std::string graph, input_name;
  std::vector<std::string> output_names, weight_names;
  std::vector<EngineRef> engines;
};

struct GridEntry {
  std::string name;
  std::vector<double> r;
  double c = 0;
  std::string signature, adaptation;
};

struct Manifest {
  std::string family;
  std::vector<TaskInfo> tasks;
  InputSpec input;
  json full_net, model, build, anchor;  // anchor: {"id", "plan"}
  std::map<std::string, SignatureInfo> signatures;
  std::vector<GridEntry> grid;

  const GridEntry& entry(const std::string& name) const;
};

// Validates a parsed manifest; Error names the first problem (the Python texts).
Manifest manifest_from_json(const json& d);
// Reads and validates BUNDLE_DIR/manifest.json.
Manifest load_manifest(const fs::path& bundle);

// A preference (r, c) checked as the Python runtime checks it; r is returned normalised.
struct Preference {
  std::vector<double> r;
  double c;
};
Preference validate_preference(const json& r, const json& c, size_t n_tasks, const std::string& where = "preference");

}  // namespace edgemtl

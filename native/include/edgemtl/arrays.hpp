// Content-addressed array files of a bundle (edgecore/arrays.py): safetensors,
// named by the hash of their content, so a tampered, truncated or swapped file
// is refused on load. Also the sha256 helpers every content check uses.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "edgemtl/common.hpp"

namespace edgemtl {

struct Array {
  std::string dtype;  // safetensors code: F32, F64, U8, I64, ...
  Shape shape;
  std::vector<uint8_t> data;

  size_t numel() const;
  const float* f32(const std::string& who) const;  // Error unless dtype is F32
};

using Arrays = std::map<std::string, Array>;  // sorted by name, as the content hash walks them

// Incremental sha256 (OpenSSL), hex digest.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  void update(const std::string& text) { update(text.data(), text.size()); }
  std::string hex();

 private:
  void* ctx_;
};

std::string sha256_hex(const std::string& text);
std::string file_sha256(const fs::path& path);

// The content id of named arrays: equal to edgecore.arrays.arrays_id (first 16 hex).
std::string arrays_id(const Arrays& arrays, size_t length = 16);

// Reads a safetensors file; with `verify`, its content must hash to the file's stem.
Arrays load_arrays(const fs::path& path, bool verify = true);
// Error unless every array is F32: the bundle format stores anchor and delta weights as
// float32, and both runtimes refuse other dtypes when the file is read, not when an array
// is first used (the Python runtime's WeightStore does the same).
void require_f32(const Arrays& arrays, const std::string& what);

}  // namespace edgemtl

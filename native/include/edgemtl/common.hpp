// Shared by every translation unit of libedgemtl: the error type, JSON and paths.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgemtl {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Every refusal is one Error whose message names what was expected, what was
// found and, where there is one, the fix: the same texts as the Python runtime.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Python-style repr of a JSON value inside messages ('abc', 3, [1, 2]).
std::string repr(const json& value);

using Shape = std::vector<int64_t>;
size_t numel(const Shape& shape);
std::string shape_repr(const Shape& shape);  // Python's tuple repr, as messages print shapes: (1, 3, 32, 32), (3,)

}  // namespace edgemtl

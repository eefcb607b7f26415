// Shared by every translation unit of libedgemtl: the error type, JSON and paths.
#pragma once

#include <cstdint>
#include <istream>
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

// Python-style repr of a JSON value inside messages ('abc', 3, [1, 2]), cut to kMaxRepr
// characters: messages quote untrusted values, never all of one.
constexpr size_t kMaxRepr = 200;
std::string repr(const json& value);

// Nesting limit of every JSON file the runtime reads (manifests, safetensors headers, latency
// tables, schedules), counted in nested arrays and objects ([] is 1, [[]] 2); the Python
// runtime refuses the same (edgecore.fileio.MAX_JSON_DEPTH).
// Deeper input is refused while it is parsed, so no recursive walk over a parsed value
// (dump, comparison) ever meets it: a 200,000-deep array used to overflow the stack.
constexpr int kMaxJsonDepth = 64;

// Parses untrusted JSON text into `out`; returns "" on success, else why not (one line,
// bounded: "not valid JSON (...)" or "nested deeper than 64 levels").
std::string parse_json(const char* begin, const char* end, json& out);
std::string parse_json(std::istream& in, json& out);

using Shape = std::vector<int64_t>;
size_t numel(const Shape& shape);
std::string shape_repr(const Shape& shape);  // Python's tuple repr, as messages print shapes: (1, 3, 32, 32), (3,)

}  // namespace edgemtl

#include "edgemtl/paths.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <regex>
#include <sstream>

namespace edgemtl {

std::string repr(const json& value) {
  std::string s;
  if (value.is_string()) {
    s = "'" + value.get<std::string>() + "'";
  } else if (value.is_null()) {
    s = "None";
  } else if (value.is_boolean()) {
    s = value.get<bool>() ? "True" : "False";
  } else {
    s = value.dump();  // depth <= kMaxJsonDepth: every parsed value went through parse_json
  }
  return s.size() > kMaxRepr ? s.substr(0, kMaxRepr) + "..." : s;
}

namespace {

struct TooDeep {};

// `parse(callback)` parses with the given callback; returns "" or why the text was refused.
template <typename Parse>
std::string parse_bounded(Parse&& parse, json& out) {
  // The callback sees every value's depth before the value is built; throwing there stops
  // the parser at the limit instead of after it has built (and must walk) the whole tree.
  // `depth` counts the containers around the event: an array or object that opens inside
  // kMaxJsonDepth of them would be the (kMaxJsonDepth + 1)-th level (Python's json_depth).
  const json::parser_callback_t limit = [](int depth, json::parse_event_t event, json&) {
    const bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && depth >= kMaxJsonDepth) throw TooDeep{};
    return true;
  };
  try {
    out = parse(limit);
  } catch (const TooDeep&) {
    return "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
  } catch (const json::exception& exc) {
    std::string why = exc.what();
    if (why.size() > kMaxRepr) why = why.substr(0, kMaxRepr) + "...";
    return "not valid JSON (" + why + ")";
  }
  return "";
}

}  // namespace

std::string parse_json(const char* begin, const char* end, json& out) {
  return parse_bounded([&](const json::parser_callback_t& cb) { return json::parse(begin, end, cb); }, out);
}

std::string parse_json(std::istream& in, json& out) {
  return parse_bounded([&](const json::parser_callback_t& cb) { return json::parse(in, cb); }, out);
}

size_t numel(const Shape& shape) {
  size_t n = 1;
  for (auto d : shape) n *= static_cast<size_t>(d);
  return n;
}

std::string shape_repr(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

namespace {

const std::map<std::string, std::pair<std::regex, std::string>>& patterns() {
  static const std::map<std::string, std::pair<std::regex, std::string>> table = {
      {"hex16", {std::regex("[0-9a-f]{16}"), "[0-9a-f]{16}"}},
      {"hex24", {std::regex("[0-9a-f]{24}"), "[0-9a-f]{24}"}},
      {"sha256", {std::regex("[0-9a-f]{64}"), "[0-9a-f]{64}"}},
      {"name", {std::regex("[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"), "[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"}},
  };
  return table;
}

Error not_relative(const std::string& where, const json& value) {
  return Error(where + ": expected a relative path inside the folder, found " + repr(value));
}

}  // namespace

const std::string& check_id(const json& value, const std::string& kind, const std::string& where) {
  const auto& [pattern, text] = patterns().at(kind);
  if (!value.is_string() || !std::regex_match(value.get_ref<const std::string&>(), pattern) || value == "." ||
      value == "..") {
    throw Error(where + ": expected " + kind + " (" + text + "), found " + repr(value));
  }
  return value.get_ref<const std::string&>();
}

const std::string& check_relative(const json& value, const std::string& where) {
  if (!value.is_string()) throw not_relative(where, value);
  const auto& s = value.get_ref<const std::string&>();
  if (s.empty() || s.find_first_of(std::string("\\:\0", 3)) != std::string::npos || s.front() == '/') {
    throw not_relative(where, value);
  }
  std::stringstream parts(s);
  for (std::string part; std::getline(parts, part, '/');) {
    if (part == ".." || part == ".") throw not_relative(where, value);
  }
  return s;
}

fs::path confine(const fs::path& root, const std::string& rel, const std::string& where) {
  check_relative(json(rel), where);
  const fs::path base = fs::weakly_canonical(fs::absolute(root));
  const fs::path path = fs::weakly_canonical(base / rel);
  auto [b, p] = std::mismatch(base.begin(), base.end(), path.begin(), path.end());
  if (b != base.end()) {
    throw Error(where + ": '" + rel + "' leaves " + root.string() + " (it resolves to " + path.string() +
                ", through a symlink)");
  }
  return path;
}

std::string slug(const std::string& text) {
  std::string out;
  bool dash = false;
  for (char ch : text) {
    const bool ok = std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-';
    if (ok) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      dash = false;
    } else if (!dash) {
      out += '-';
      dash = true;
    }
  }
  const auto first = out.find_first_not_of('-');
  if (first == std::string::npos) return "";
  return out.substr(first, out.find_last_not_of('-') - first + 1);
}

}  // namespace edgemtl

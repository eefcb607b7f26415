#include "edgemtl/manifest.hpp"

#include <cmath>
#include <fstream>
#include <sstream>

#include "edgemtl/family.hpp"
#include "edgemtl/paths.hpp"

namespace edgemtl {

namespace {

constexpr double kSimplexTol = 1e-4;

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::object: return "dict";
    case json::value_t::array: return "list";
    case json::value_t::string: return "str";
    case json::value_t::boolean: return "bool";
    case json::value_t::number_float: return "float";
    case json::value_t::null: return "NoneType";
    default: return "int";
  }
}

std::string dotted(const std::string& where, const std::string& key) { return where.empty() ? key : where + "." + key; }

// obj[key], which must exist and be of `kind` ("dict", "list", "str", "number").
const json& get(const json& obj, const std::string& key, const std::string& kind, const std::string& where) {
  if (!obj.is_object()) throw Error("manifest: " + where + " must be an object, found " + type_name(obj));
  if (!obj.contains(key)) throw Error("manifest: " + (where.empty() ? std::string("the top level") : where) + " lacks '" + key + "'");
  const json& v = obj[key];
  const bool ok = kind == "number" ? v.is_number() : type_name(v) == kind;
  if (!ok) {
    throw Error("manifest: " + dotted(where, key) + " must be " + (kind == "number" ? "int/float" : kind) + ", found " +
                type_name(v));
  }
  return v;
}

double num(const json& obj, const std::string& key, const std::string& where) {
  const double v = get(obj, key, "number", where).get<double>();
  if (!std::isfinite(v)) throw Error("manifest: " + dotted(where, key) + " must be finite, found " + std::to_string(v));
  return v;
}

const std::string& str(const json& obj, const std::string& key, const std::string& where) {
  return get(obj, key, "str", where).get_ref<const std::string&>();
}

std::vector<std::string> strings(const json& obj, const std::string& key, const std::string& where) {
  std::vector<std::string> out;
  for (const auto& v : get(obj, key, "list", where)) {
    if (!v.is_string()) throw Error("manifest: " + dotted(where, key) + " must hold strings, found " + repr(v));
    out.push_back(v.get<std::string>());
  }
  return out;
}

EngineRef engine(const json& d, const std::string& where) {
  EngineRef e{str(d, "backend", where), str(d, "precision", where), str(d, "device", where),
              str(d, "key", where),     str(d, "path", where),      str(d, "sha256", where)};
  check_id(e.backend, "name", "manifest: " + where + ".backend");
  check_id(e.precision, "name", "manifest: " + where + ".precision");
  check_id(e.device, "name", "manifest: " + where + ".device");
  check_id(e.key, "hex24", "manifest: " + where + ".key");
  check_id(e.sha256, "sha256", "manifest: " + where + ".sha256");
  check_relative(e.path, "manifest: " + where + ".path");
  return e;
}

SignatureInfo signature(const json& d, const std::string& where, const Family& family) {
  SignatureInfo s;
  s.signature = check_id(get(d, "signature", "str", where), "hex16", "manifest: " + where + ".signature");
  try {
    s.spec = family.canonical(get(d, "tree", "list", where));
  } catch (const Error& exc) {
    throw Error("manifest: " + where + ".tree is not a " + family.name + " spec: " + exc.what());
  }
  const std::string actual = family.signature(s.spec);
  if (actual != s.signature) throw Error("manifest: " + where + ".tree has signature " + actual + ", not '" + s.signature + "'");
  get(d, "nodes_per_layer", "list", where);
  s.params = static_cast<int64_t>(num(d, "params", where));
  s.flops = num(d, "flops", where);
  s.graph = check_relative(get(d, "graph", "str", where), "manifest: " + where + ".graph");
  s.input_name = str(d, "input_name", where);
  s.output_names = strings(d, "output_names", where);
  s.weight_names = strings(d, "weight_names", where);
  const json& engines = get(d, "engines", "list", where);
  for (size_t i = 0; i < engines.size(); ++i) s.engines.push_back(engine(engines[i], where + ".engines[" + std::to_string(i) + "]"));
  return s;
}

GridEntry entry(const json& d, const std::string& where, size_t n_tasks, const std::map<std::string, SignatureInfo>& sigs) {
  const Preference pref = validate_preference(get(d, "r", "list", where), num(d, "c", where), n_tasks, "manifest: " + where);
  const std::string& sig = str(d, "signature", where);
  if (!sigs.count(sig)) throw Error("manifest: " + where + ".signature '" + sig + "' is not among the bundle's signatures");
  GridEntry e{str(d, "name", where), pref.r, pref.c, sig, ""};
  e.adaptation = check_id(get(d, "adaptation", "str", where), "hex16", "manifest: " + where + ".adaptation");
  get(d, "parity", "dict", where);
  return e;
}

InputSpec input_spec(const json& inp) {
  InputSpec spec;
  const json& shape = get(inp, "shape", "list", "input");
  bool ok = shape.size() == 3;
  for (const auto& v : shape) ok = ok && v.is_number_integer() && v.get<long long>() > 0 && v.get<long long>() <= kMaxSide;
  if (!ok) {
    throw Error("manifest: input.shape must be [C, H, W] of positive integers <= " + std::to_string(kMaxSide) + ", found " +
                shape.dump());
  }
  for (int i = 0; i < 3; ++i) spec.shape[static_cast<size_t>(i)] = shape[static_cast<size_t>(i)].get<int>();
  spec.colour_order = str(inp, "colour_order", "input");
  std::string upper = spec.colour_order;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (upper != "RGB" && upper != "BGR") throw Error("manifest: input.colour_order must be RGB or BGR, found " + repr(spec.colour_order));
  spec.colour_order = upper;
  spec.scale = num(inp, "scale", "input");
  for (const char* name : {"mean", "std"}) {
    const json& values = get(inp, name, "list", "input");
    bool good = values.size() == static_cast<size_t>(spec.shape[0]);
    for (const auto& v : values) good = good && v.is_number() && std::isfinite(v.get<double>()) && (std::string(name) == "mean" || v.get<double>() > 0);
    if (!good) {
      throw Error(std::string("manifest: input.") + name + " must be " + std::to_string(spec.shape[0]) + " finite numbers" +
                  (std::string(name) == "std" ? " > 0" : "") + ", found " + values.dump());
    }
    (std::string(name) == "mean" ? spec.mean : spec.std) = values.get<std::vector<double>>();
  }
  if (!(spec.scale > 0)) throw Error("manifest: input.scale must be > 0, found " + std::to_string(spec.scale));
  return spec;
}

void check_version(const json& d) {
  if (!d.is_object() || d.value("format", json()) != kFormat) {
    const std::string found = d.is_object() ? repr(d.value("format", json())) : "'" + type_name(d) + "'";
    throw Error(std::string("not a bundle manifest: expected format '") + kFormat + "', found " + found);
  }
  const json version = d.value("format_version", json());
  if (version == kFormatVersion) return;
  const bool older = version.is_number_integer() && version.get<long long>() < kFormatVersion;
  throw Error("bundle format version " + repr(version) + " is not supported: this runtime reads version " +
              std::to_string(kFormatVersion) + "; " +
              (older ? std::string("rebuild the bundle with compiler >= ") + kFirstCompiler + " (`compiler build`)"
                     : std::string("update the runtime to the compiler's release that built it")));
}

void check_hypernets(const json& h) {
  if (h.is_null()) return;
  for (const char* key : {"graph", "plan"}) check_relative(get(h, key, "str", "hypernets"), std::string("manifest: hypernets.") + key);
}

}  // namespace

Preference validate_preference(const json& r, const json& c, size_t n_tasks, const std::string& where) {
  if (!r.is_array()) throw Error(where + ": r must be a list of " + std::to_string(n_tasks) + " numbers, found " + repr(r));
  if (r.size() != n_tasks) {
    throw Error(where + ": r must have " + std::to_string(n_tasks) + " entries (one per task), found " + std::to_string(r.size()));
  }
  Preference p{{}, 0.0};
  double total = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const std::string at = where + ": r[" + std::to_string(i) + "]";
    if (!r[i].is_number()) throw Error(at + " must be a number, found " + repr(r[i]));
    const double v = r[i].get<double>();
    if (!std::isfinite(v)) throw Error(at + " must be finite, found " + std::string(std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"));
    if (v < 0) throw Error(at + " must be >= 0, found " + repr(r[i]));
    p.r.push_back(v);
    total += v;
  }
  if (std::abs(total - 1.0) > kSimplexTol) {
    std::ostringstream s;
    s << where << ": r must sum to 1 (within 0.0001), found sum " << total;
    throw Error(s.str());
  }
  if (!c.is_number() || !std::isfinite(c.get<double>())) throw Error(where + ": c must be a finite number in [0, 1], found " + repr(c));
  p.c = c.get<double>();
  if (p.c < 0.0 || p.c > 1.0) throw Error(where + ": c must be in [0, 1], found " + repr(c));
  for (auto& v : p.r) v /= total;
  return p;
}

const GridEntry& Manifest::entry(const std::string& name) const {
  for (const auto& e : grid) {
    if (e.name == name) return e;
  }
  throw Error("no grid point named '" + name + "' in this bundle");
}

Manifest manifest_from_json(const json& d) {
  check_version(d);
  Manifest m;
  const json& tasks = get(d, "tasks", "list", "");
  for (size_t i = 0; i < tasks.size(); ++i) {
    const std::string where = "tasks[" + std::to_string(i) + "]";
    m.tasks.push_back({str(tasks[i], "name", where), str(tasks[i], "kind", where), static_cast<int>(num(tasks[i], "channels", where))});
  }
  m.input = input_spec(get(d, "input", "dict", ""));
  const json family = d.value("family", json(kDefaultFamily));
  try {
    m.family = get_family(family.is_string() ? family.get<std::string>() : family.dump()).name;
  } catch (const Error& exc) {
    throw Error(std::string("manifest: ") + exc.what());
  }
  for (const auto& [key, value] : get(d, "signatures", "dict", "").items()) {
    SignatureInfo s = signature(value, "signatures." + key, get_family(m.family));
    if (s.signature != key) throw Error("manifest: signatures." + key + " holds signature '" + s.signature + "'");
    m.signatures.emplace(key, std::move(s));
  }
  const json& grid = get(d, "grid", "list", "");
  for (size_t i = 0; i < grid.size(); ++i) m.grid.push_back(entry(grid[i], "grid[" + std::to_string(i) + "]", m.tasks.size(), m.signatures));
  if (m.grid.empty()) throw Error("manifest: the grid is empty");
  m.model = get(d, "model", "dict", "");
  m.full_net = get(d, "full_net", "dict", "");
  m.anchor = get(d, "anchor", "dict", "");
  check_id(get(m.anchor, "id", "str", "anchor"), "hex16", "manifest: anchor.id");
  get(m.anchor, "plan", "dict", "anchor");
  check_hypernets(d.value("hypernets", json()));
  m.build = d.value("build", json::object());
  return m;
}

Manifest load_manifest(const fs::path& bundle) {
  const fs::path path = bundle / "manifest.json";
  if (!fs::is_regular_file(path)) throw Error(bundle.string() + " is not a bundle: manifest.json is missing");
  const auto size = fs::file_size(path);
  if (size > kMaxManifestBytes) {
    throw Error(path.string() + " is " + std::to_string(size) + " bytes; a manifest is at most " + std::to_string(kMaxManifestBytes));
  }
  std::ifstream f(path, std::ios::binary);
  json d;
  if (const std::string why = parse_json(f, d); !why.empty()) throw Error(path.string() + " is " + why);
  return manifest_from_json(d);
}

}  // namespace edgemtl

#include "edgemtl/resolve.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <sys/utsname.h>

#include "edgemtl/paths.hpp"

namespace edgemtl {

namespace {

constexpr int kLatencyVersion = 2;

std::string ms(double v, int digits = 2) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string general(double v) {  // Python's format(v, "g")
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto value = line.substr(line.find(':') + 1);
      const auto first = value.find_first_not_of(" \t");
      const auto last = value.find_last_not_of(" \t");
      return first == std::string::npos ? "" : value.substr(first, last - first + 1);
    }
  }
  struct utsname u {};
  return uname(&u) == 0 ? u.machine : "unknown";  // Python: platform.processor() or platform.machine()
}

void check_stats(const json& v, const std::string& where) {
  const bool keys = v.is_object() && v.size() == 3 && v.contains("p50") && v.contains("p90") && v.contains("p99");
  if (!keys) throw Error(where + ": expected keys ['p50', 'p90', 'p99'], found " + v.dump());
  for (const char* k : {"p50", "p90", "p99"}) {
    const json& x = v[k];
    if (!x.is_number() || !std::isfinite(x.get<double>()) || x.get<double>() <= 0) {
      throw Error(where + "." + k + ": expected a finite positive number of ms, found " + repr(x));
    }
  }
  if (!(v["p50"].get<double>() <= v["p90"].get<double>() && v["p90"].get<double>() <= v["p99"].get<double>())) {
    throw Error(where + ": expected p50 <= p90 <= p99, found " + v.dump());
  }
}

}  // namespace

double r_distance(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += std::abs(a[i] - b[i]);
  return d;
}

Selection nearest(const Manifest& m, const std::vector<double>& r, double c) {
  size_t best = 0;
  double best_d = INFINITY;
  for (size_t i = 0; i < m.grid.size(); ++i) {
    const double d = r_distance(m.grid[i].r, r) + std::abs(m.grid[i].c - c);
    if (d < best_d) best = i, best_d = d;
  }
  return {&m.grid[best], best_d, best_d < 1e-9 ? "exact grid point" : "nearest grid point (d=" + ms(best_d, 3) + ")", true};
}

Selection within_budget(const Manifest& m, const std::map<std::string, double>& latency, double budget_ms,
                        const std::vector<double>& r) {
  auto lat = [&](const GridEntry& e) {
    auto it = latency.find(e.signature);
    if (it == latency.end()) throw Error("latency table has no entry for signature " + e.signature + ": rerun `runtime calibrate`");
    return it->second;
  };
  const GridEntry* best = nullptr;
  const GridEntry* fastest = &m.grid[0];
  std::pair<long long, double> best_key{0, 0};
  for (const auto& e : m.grid) {
    if (lat(e) < lat(*fastest)) fastest = &e;
    if (lat(e) > budget_ms) continue;
    const std::pair<long long, double> key{std::llround(r_distance(e.r, r) * 1e9), e.c};  // round(d, 9), then c
    if (best == nullptr || key < best_key) best = &e, best_key = key;
  }
  if (best != nullptr) {
    return {best, r_distance(best->r, r), "fits " + general(budget_ms) + " ms (" + ms(lat(*best)) + " ms measured)", true};
  }
  return {fastest, r_distance(fastest->r, r),
          "nothing fits " + general(budget_ms) + " ms: fastest point (" + ms(lat(*fastest)) + " ms)", false};
}

std::string machine_id() { return slug(cpu_model() + "-" + std::to_string(std::thread::hardware_concurrency()) + "c"); }

std::map<std::string, double> load_latency(const fs::path& bundle, const Manifest& m, const std::string& backend,
                                           const std::string& device, const std::string& stat) {
  const std::string machine = machine_id();
  for (const auto& [field, value] : {std::pair<std::string, std::string>{"backend", backend}, {"device", device}, {"machine", machine}}) {
    check_id(value, "name", "latency table " + field);
  }
  const fs::path path = confine(bundle, "latency/" + backend + "-" + device + "-" + machine + ".json", "latency table");
  if (!fs::is_regular_file(path)) {
    throw Error("no latency table for " + backend + " on " + device + " measured on this machine (" + path.string() +
                "): run `runtime calibrate " + bundle.string() + " --backend " + backend + "` here first");
  }
  std::ifstream f(path, std::ios::binary);
  json data;
  const std::string where = "latency table " + path.string();
  if (const std::string why = parse_json(f, data); !why.empty()) {
    throw Error(where + " is unreadable (" + why + "): rerun `runtime calibrate`");
  }
  if (!data.is_object() || data.value("version", json()) != kLatencyVersion) {
    throw Error(where + ": expected version 2, found " + (data.is_object() ? repr(data.value("version", json())) : "unreadable JSON") +
                ": rerun `runtime calibrate`");
  }
  const json sigs = data.value("signatures", json());
  if (!sigs.is_object() || sigs.empty()) throw Error(where + ": expected a non-empty 'signatures' object");
  std::map<std::string, double> out;
  for (const auto& [sig, v] : sigs.items()) {
    if (!m.signatures.count(sig)) {
      throw Error(where + ": signatures ['" + sig + "'] are not in this bundle (a table of another bundle?): rerun `runtime calibrate`");
    }
    check_stats(v, where + ": signatures." + sig);
    out[sig] = v[stat].get<double>();
  }
  return out;
}

json percentiles(std::vector<double> values, const std::vector<int>& qs) {
  json out = json::object();
  if (values.empty()) return out;
  std::sort(values.begin(), values.end());
  for (int q : qs) {
    const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, values.size() - 1);
    out["p" + std::to_string(q)] = values[lo] + (values[hi] - values[lo]) * (pos - static_cast<double>(lo));
  }
  return out;
}

}  // namespace edgemtl

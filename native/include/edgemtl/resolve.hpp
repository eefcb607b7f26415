// Preference and budget resolution over a bundle's grid (runtime/resolve.py) and the
// calibrated latency table it reads (runtime/latency.py), with the same rules.
#pragma once

#include <vector>

#include "edgemtl/manifest.hpp"

namespace edgemtl {

struct Selection {
  const GridEntry* entry = nullptr;
  double distance = 0;
  std::string reason;
  bool fits = true;  // budget picks: whether its measured latency fits the budget
};

double r_distance(const std::vector<double>& a, const std::vector<double>& b);

// Nearest grid point: d = sum_i |r_i - r'_i| + |c - c'|, ties to the earlier point.
Selection nearest(const Manifest& m, const std::vector<double>& r, double c);

// The most capable point within `budget_ms`: closest to r, then smallest c; else the fastest.
Selection within_budget(const Manifest& m, const std::map<std::string, double>& latency, double budget_ms,
                        const std::vector<double>& r);

// This machine as the Python runtime names it: slug("<cpu model>-<cores>c").
std::string machine_id();

// {signature: ms} of statistic `stat` from latency/<backend>-<device>-<machine>.json, validated.
std::map<std::string, double> load_latency(const fs::path& bundle, const Manifest& m, const std::string& backend,
                                           const std::string& device, const std::string& stat = "p90");

// numpy.percentile (linear interpolation) of `values` at qs: {"p50": ...}; {} when empty.
json percentiles(std::vector<double> values, const std::vector<int>& qs = {50, 90, 99});

}  // namespace edgemtl

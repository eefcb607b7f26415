// Schedules of preference and budget switches (runtime/app.py's format and checks):
//   {"events": [{"frame": 0, "r": [...], "c": 0.5}, {"frame": 40, "budget_ms": 2.0}, ...]}
#pragma once

#include <map>
#include <optional>
#include <vector>

#include "edgemtl/common.hpp"

namespace edgemtl {

struct Event {
  int64_t frame = 0;
  std::optional<std::vector<double>> r;
  std::optional<double> c, budget_ms;
};

using Schedule = std::map<int64_t, std::vector<Event>>;

// Reads `path` (or a shipped schedule by name from `shipped_dir`); Error names the bad event.
Schedule load_schedule(const std::string& path, const fs::path& shipped_dir);
// Checks every event against the bundle's task count and the run's frame count (if known).
void check_schedule(const Schedule& schedule, size_t n_tasks, const std::string& path, std::optional<int64_t> frames);

}  // namespace edgemtl

#include "schedule.hpp"

#include <fstream>

#include "edgemtl/manifest.hpp"

namespace edgemtl {

namespace {

Event parse_event(const json& ev, const std::string& where) {
  bool keys = ev.is_object();
  if (keys) {
    for (const auto& [k, v] : ev.items()) keys = keys && (k == "frame" || k == "r" || k == "c" || k == "budget_ms");
  }
  if (!keys) throw Error(where + ": expected keys frame, r, c, budget_ms; found " + ev.dump());
  const json frame = ev.value("frame", json());
  if (!frame.is_number_integer() || frame.get<int64_t>() < 0) throw Error(where + ": frame must be an integer >= 0, found " + repr(frame));
  if (ev.contains("r") != ev.contains("c") || (!ev.contains("r") && !ev.contains("budget_ms"))) {
    throw Error(where + ": give r and c together, and/or budget_ms");
  }
  if (ev.contains("r") && !ev["r"].is_array()) throw Error(where + ": r must be a list of task weights, found " + ev["r"].dump());
  Event out;
  out.frame = frame.get<int64_t>();
  if (ev.contains("r")) {
    for (const auto& v : ev["r"]) {
      if (!v.is_number()) throw Error(where + ": r must hold numbers, found " + ev["r"].dump());
    }
    if (!ev["c"].is_number()) throw Error(where + ": c must be a finite number in [0, 1], found " + repr(ev["c"]));
    out.r = ev["r"].get<std::vector<double>>();
    out.c = ev["c"].get<double>();
  }
  if (ev.contains("budget_ms")) {
    if (!ev["budget_ms"].is_number() || !(ev["budget_ms"].get<double>() > 0)) {
      throw Error(where + ": budget_ms must be a positive number, found " + repr(ev["budget_ms"]));
    }
    out.budget_ms = ev["budget_ms"].get<double>();
  }
  return out;
}

}  // namespace

Schedule load_schedule(const std::string& path, const fs::path& shipped_dir) {
  fs::path file = path;
  if (!fs::exists(file) && fs::is_regular_file(shipped_dir / (path + ".json"))) file = shipped_dir / (path + ".json");
  std::ifstream f(file, std::ios::binary);
  if (!f.is_open()) throw Error("schedule " + path + ": cannot read JSON (no such file)");
  json data;
  if (const std::string why = parse_json(f, data); !why.empty()) throw Error("schedule " + path + ": cannot read JSON: " + why);
  if (!data.is_object() || !data.contains("events") || !data["events"].is_array()) {
    throw Error("schedule " + path + ": expected {\"events\": [...]}");
  }
  Schedule out;
  for (size_t i = 0; i < data["events"].size(); ++i) {
    Event ev = parse_event(data["events"][i], "schedule " + path + ": events[" + std::to_string(i) + "]");
    out[ev.frame].push_back(ev);
  }
  return out;
}

void check_schedule(const Schedule& schedule, size_t n_tasks, const std::string& path, std::optional<int64_t> frames) {
  if (frames && !schedule.empty() && schedule.rbegin()->first >= *frames) {
    const auto late = schedule.lower_bound(*frames)->first;
    throw Error("schedule " + path + ": an event at frame " + std::to_string(late) + " would never run: the run has " +
                std::to_string(*frames) + " frames (0.." + std::to_string(*frames - 1) + ")");
  }
  for (const auto& [frame, events] : schedule) {
    for (const auto& ev : events) {
      if (ev.r) validate_preference(json(*ev.r), json(*ev.c), n_tasks, "schedule " + path + ": event at frame " + std::to_string(frame));
    }
  }
}

}  // namespace edgemtl

// The native runtime (runtime/core.py in C++): a compiled bundle, one active
// sub-network, swaps between calls.
//
//   edgemtl::Runtime rt("bundles/scenes3");             // backend "auto"
//   rt.set_preference({0.6, 0.2, 0.2}, 0.5);             // nearest grid point, blocks until active
//   auto swap = rt.set_preference(r, c, false);          // returns at once; loads on a background thread
//   rt.run(input, outputs);                              // runs on the current sub-network meanwhile
//   swap->wait();
//   rt.set_budget(4.0);                                  // most capable point within 4 ms (needs calibrate)
//
// Thread safety: the active selection is one immutable record swapped under a lock;
// a call pins the record it starts with (a shared_ptr), so a swap from the loader
// thread or another caller takes effect at the next call and never frees an engine
// under a running one. Requests are numbered: a load that finishes after a newer
// request was made is kept warm but never installed ("superseded").
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include "edgemtl/manifest.hpp"
#include "edgemtl/resolve.hpp"
#include "edgemtl/runner.hpp"

namespace edgemtl {

struct Options {
  std::string backend = "auto";  // or a backend's name
  int threads = 0;               // engine threads; 0: the backend's default
  double pool_mb = 256;          // warm engines kept for hot swaps
  std::string latency_stat = "p90";
};

// A requested switch. wait() blocks until it took effect ("active"), was overtaken by a
// newer request ("superseded") or failed (throws Error); `at_call`: calls started before it
// (a call already running when it took effect finishes on the old sub-network).
//
// `selection.entry` points into the runtime's manifest: valid while the Runtime lives.
class Swap {
 public:
  Swap(Selection selection, std::string why, std::optional<double> budget, uint64_t generation);
  Selection wait() const;
  bool done() const;
  std::string state() const;

  const Selection selection;
  const std::string why;
  const std::optional<double> budget;
  const uint64_t generation;

 private:
  friend class Runtime;
  void finish(const std::string& state, const std::string& error = "");

  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::string state_ = "pending", error_;
  const std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();

 public:  // set once, before finish() (read after wait())
  int64_t at_call = -1;
  double ms = 0;
  bool warm = false, switched = false;
};

class Runtime {
 public:
  explicit Runtime(const fs::path& bundle, Options options = {});
  ~Runtime();
  // Stops the background loader: queued swaps end "superseded", a load in progress
  // finishes first. Calls keep running on the active sub-network; new swaps are refused.
  void close();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const Manifest& manifest() const { return manifest_; }
  const std::string& backend() const { return backend_; }
  const std::string& backend_reason() const { return backend_reason_; }

  // Switches to the compiled grid point nearest to (r, c); `wait=false` loads in the background.
  std::shared_ptr<Swap> set_preference(const std::vector<double>& r, double c, bool wait = true);
  // The most capable point whose calibrated latency here fits `ms`, for task weights `r`
  // (default: those of the latest request). Nothing fits: the fastest (selection.fits false).
  std::shared_ptr<Swap> set_budget(double ms, const std::optional<std::vector<double>>& r = std::nullopt,
                                   bool wait = true);
  Selection resolve(const std::vector<double>& r, double c) const;

  // Runs one preprocessed (1, C, H, W) float32 input into `outputs` (one buffer per task,
  // output_sizes() floats each); returns the selection whose engine ran it.
  Selection run(const float* input, const std::vector<float*>& outputs);
  // Runs one HxWx3 uint8 frame (colour order "RGB" or "BGR"), preprocessing it as trained.
  Selection run_frame(const uint8_t* hwc, int height, int width, const std::string& colour_order,
                      const std::vector<float*>& outputs);

  std::vector<Shape> output_shapes() const;
  Selection current() const;
  std::optional<double> budget_ms() const;
  int64_t calls() const;
  double last_call_ms() const;
  double last_engine_ms() const;
  std::map<std::string, double> latency_table();
  std::string device() const;  // the engines' device of this backend (latency table key)
  // Percentiles of the last 10,000 calls, swap counts and times, pool counters (Python's schema).
  json stats() const;
  json swap_records() const;  // every switch: why, to, signature, warm, ms, at_call

  // The folded weight set of a grid point (its adaptation folded into the anchor) and its
  // verified engine file: what a load binds (benchmarks, tools).
  WeightSet weights(const GridEntry& entry);
  const EngineRef& engine(const std::string& signature) const;  // this backend's engine record
  fs::path engine_path(const std::string& signature) const;

 private:
  struct Loaded;
  struct Active;
  class Pool;

  std::shared_ptr<Swap> request(Selection sel, const std::string& why, std::optional<double> budget, bool wait);
  void prepare(const std::shared_ptr<Swap>& swap);
  bool install(const std::shared_ptr<Swap>& swap, const std::shared_ptr<Loaded>& item);
  std::shared_ptr<Loaded> load(const GridEntry& entry);
  std::shared_ptr<Loaded> rebind_or_load(const GridEntry& entry);
  void loader_loop();
  Selection run_since(std::chrono::steady_clock::time_point t0, const float* input, const std::vector<float*>& outputs);
  Selection record_call(const std::shared_ptr<const Active>& active, double call_ms, double engine_ms);

  fs::path bundle_;
  Manifest manifest_;
  Options options_;
  std::string backend_, backend_reason_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<Anchor> anchor_;
  std::mutex anchor_mutex_;

  mutable std::mutex mutex_;  // guards everything below
  std::shared_ptr<const Active> active_;
  Selection target_;
  uint64_t generation_ = 0;
  std::optional<double> budget_;
  std::optional<std::map<std::string, double>> latency_;
  int64_t calls_ = 0;
  int64_t started_ = 0;  // calls that took the active record; a swap's at_call counts these
  std::deque<double> call_ms_, engine_ms_;
  json swaps_ = json::array();

  std::deque<std::shared_ptr<Swap>> queue_;
  std::condition_variable queue_cv_;
  bool stopping_ = false;
  std::once_flag closed_;
  std::thread loader_;
};

// (backend, reason): "auto" takes the first usable backend with engines in the bundle, in
// the order the compiler measured (manifest build.auto.order), then by priority.
std::pair<std::string, std::string> choose_backend(const Manifest& m, const std::string& backend);

// HxWx3 uint8 -> (1, C, H, W) float32 as the bundle's input spec says (runtime/preprocess.py).
void preprocess(const uint8_t* hwc, int height, int width, const std::string& colour_order, const InputSpec& spec,
                float* out);

}  // namespace edgemtl

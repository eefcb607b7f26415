#include "edgemtl/runtime.hpp"

#include <chrono>
#include <set>
#include <cmath>

#include "edgemtl/paths.hpp"

namespace edgemtl {

namespace {

constexpr size_t kRecentCalls = 10000;  // latency percentiles cover the last this-many calls

double since_ms(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void push_recent(std::deque<double>& ring, double v) {
  ring.push_back(v);
  if (ring.size() > kRecentCalls) ring.pop_front();
}

size_t nbytes(const WeightSet& weights) {
  size_t n = 0;
  for (const auto& [name, a] : weights) n += a.data.size();
  return n;
}

}  // namespace

// -- swaps ---------------------------------------------------------------------------------

Swap::Swap(Selection selection, std::string why, std::optional<double> budget, uint64_t generation)
    : selection(std::move(selection)), why(std::move(why)), budget(budget), generation(generation) {}

Selection Swap::wait() const {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return state_ != "pending"; });
  if (state_ == "failed") throw Error(error_);
  return selection;
}

bool Swap::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_ != "pending";
}

std::string Swap::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

void Swap::finish(const std::string& state, const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ms = since_ms(t0_);
    state_ = state;
    error_ = error;
  }
  cv_.notify_all();
}

// -- warm pool -----------------------------------------------------------------------------

struct Runtime::Loaded {
  std::unique_ptr<Runner> runner;
  std::mutex run_mutex;  // runners are not thread-safe: one call at a time
  size_t bytes = 0;
};

struct Runtime::Active {
  Selection selection;
  std::shared_ptr<Loaded> item;
};

// Loaded engines by (signature, adaptation), least recently used evicted past the memory
// budget. The active engine is held by the active record too, so eviction never frees it.
class Runtime::Pool {
 public:
  explicit Pool(size_t budget) : budget_(budget) {}

  std::pair<std::shared_ptr<Loaded>, bool> get(const std::string& key, const std::function<std::shared_ptr<Loaded>()>& make) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = items_.begin(); it != items_.end(); ++it) {
        if (it->first == key) {
          items_.splice(items_.begin(), items_, it);
          ++hits_;
          return {items_.front().second, true};
        }
      }
    }
    auto item = make();
    std::lock_guard<std::mutex> lock(mutex_);
    ++misses_;
    for (const auto& [k, existing] : items_) {
      if (k == key) return {existing, false};  // loaded meanwhile by another thread: keep that one
    }
    items_.emplace_front(key, item);
    bytes_ += item->bytes;
    evict();
    return {item, false};
  }

  // Removes and returns an engine nobody holds whose key starts with `prefix` (same
  // signature, another weight set), for backends that rebind in place; else null.
  std::shared_ptr<Loaded> take_idle(const std::string& prefix) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = items_.rbegin(); it != items_.rend(); ++it) {
      if (it->first.rfind(prefix, 0) == 0 && it->second.use_count() == 1) {
        auto item = it->second;
        bytes_ -= item->bytes;
        items_.erase(std::next(it).base());
        return item;
      }
    }
    return nullptr;
  }

  json stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return {{"hits", hits_}, {"misses", misses_}, {"evictions", evictions_}, {"mb", static_cast<double>(bytes_) / (1 << 20)}};
  }

 private:
  void evict() {  // from the least recently used end, skipping engines someone still holds
    for (auto it = std::prev(items_.end()); bytes_ > budget_ && it != items_.begin();) {
      auto prev = std::prev(it);
      if (it->second.use_count() == 1) {
        bytes_ -= it->second->bytes;
        items_.erase(it);
        ++evictions_;
      }
      it = prev;
    }
  }

  mutable std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<Loaded>>> items_;
  size_t budget_, bytes_ = 0;
  int64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

// -- backend choice ------------------------------------------------------------------------

std::pair<std::string, std::string> choose_backend(const Manifest& m, const std::string& backend) {
  std::set<std::string> built;
  for (const auto& [sig, info] : m.signatures) {
    for (const auto& ref : info.engines) built.insert(ref.backend);
  }
  auto built_list = [&] {
    std::string s;
    for (const auto& b : built) s += (s.empty() ? "'" : ", '") + b + "'";
    return "[" + s + "]";
  };
  if (backend != "auto") {
    if (!built.count(backend)) {
      throw Error("bundle has no " + backend + " engines (it has " + built_list() + "); rebuild it with `compiler build --backend " +
                  backend + "`");
    }
    const auto [ok, why] = get_backend(backend).available();
    if (!ok) throw Error("backend " + backend + " cannot run here: " + why);
    return {backend, "requested; " + why};
  }
  std::vector<std::string> order;
  const json* measured = nullptr;  // build.auto.order, when it is well formed (else ignored, as in Python)
  if (m.build.is_object() && m.build.contains("auto") && m.build["auto"].is_object() && m.build["auto"].contains("order")) {
    measured = &m.build["auto"]["order"];
  }
  for (const auto& name : measured && measured->is_array() ? *measured : json::array()) {
    if (name.is_string()) order.push_back(name.get<std::string>());
  }
  const size_t n_measured = order.size();
  for (const auto& b : backends()) order.push_back(b.name);
  std::string reasons;
  for (size_t i = 0; i < order.size(); ++i) {
    const auto& name = order[i];
    const Backend* b = nullptr;
    for (const auto& row : backends()) b = row.name == name ? &row : b;
    if (b == nullptr) {  // measured by the compiler, not a backend of the native runtime
      if (built.count(name) && reasons.find(name + ":") == std::string::npos) {
        reasons += (reasons.empty() ? "" : "; ") + name + ": not in the native runtime";
      }
      continue;
    }
    const auto [ok, why] = b->available();
    if (ok && built.count(name)) {
      const std::string rule = i < n_measured ? "auto (the compiler's measured order)" : "auto";
      return {name, rule + ": " + why + (reasons.empty() ? "" : " (" + reasons + ")")};
    }
    reasons += (reasons.empty() ? "" : "; ") + name + ": " + (ok ? "no engines in bundle" : why);
  }
  for (const auto& u : unavailable_backends()) reasons += (reasons.empty() ? "" : "; ") + u;
  throw Error("no usable backend: " + reasons + " (bundle has " + built_list() + " engines)");
}

// -- runtime -------------------------------------------------------------------------------

Runtime::Runtime(const fs::path& bundle, Options options)
    : bundle_(bundle), manifest_(load_manifest(bundle)), options_(std::move(options)) {
  if (!(options_.pool_mb >= 0) || !std::isfinite(options_.pool_mb)) throw Error("pool_mb must be >= 0");
  if (options_.latency_stat != "p50" && options_.latency_stat != "p90" && options_.latency_stat != "p99") {
    throw Error("latency statistic must be one of ['p50', 'p90', 'p99'], found '" + options_.latency_stat + "'");
  }
  std::tie(backend_, backend_reason_) = choose_backend(manifest_, options_.backend);
  pool_ = std::make_unique<Pool>(static_cast<size_t>(options_.pool_mb * (1 << 20)));
  loader_ = std::thread([this] { loader_loop(); });
  try {
    request({&manifest_.grid.front(), 0.0, "first grid point", true}, "load", std::nullopt, true);
  } catch (...) {
    { std::lock_guard<std::mutex> lock(mutex_); stopping_ = true; }
    queue_cv_.notify_all();
    loader_.join();
    throw;
  }
}

Runtime::~Runtime() { close(); }

void Runtime::close() {
  std::call_once(closed_, [this] {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++generation_;  // queued swaps are superseded, not loaded
      stopping_ = true;
    }
    queue_cv_.notify_all();
    loader_.join();
  });
}

void Runtime::loader_loop() {
  for (;;) {
    std::shared_ptr<Swap> swap;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      swap = queue_.front();
      queue_.pop_front();
    }
    prepare(swap);
  }
}

Selection Runtime::resolve(const std::vector<double>& r, double c) const {
  const Preference pref = validate_preference(json(r), json(c), manifest_.tasks.size());
  return nearest(manifest_, pref.r, pref.c);
}

std::shared_ptr<Swap> Runtime::set_preference(const std::vector<double>& r, double c, bool wait) {
  return request(resolve(r, c), "preference", std::nullopt, wait);
}

std::shared_ptr<Swap> Runtime::set_budget(double ms, const std::optional<std::vector<double>>& r, bool wait) {
  if (!std::isfinite(ms) || ms <= 0) throw Error("budget must be a positive number of milliseconds, found " + json(ms).dump());
  std::vector<double> weights;
  if (r) {
    weights = validate_preference(json(*r), json(0.0), manifest_.tasks.size()).r;
  } else {
    std::lock_guard<std::mutex> lock(mutex_);
    weights = target_.entry->r;  // the latest request's task weights (it may still be loading)
  }
  return request(within_budget(manifest_, latency_table(), ms, weights), "budget", ms, wait);
}

std::map<std::string, double> Runtime::latency_table() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!latency_) latency_ = load_latency(bundle_, manifest_, backend_, device(), options_.latency_stat);
  return *latency_;
}

std::string Runtime::device() const {
  for (const auto& [sig, info] : manifest_.signatures) {
    for (const auto& ref : info.engines) {
      if (ref.backend == backend_) return ref.device;
    }
  }
  throw Error("bundle has no " + backend_ + " engines");
}

const EngineRef& Runtime::engine(const std::string& signature) const {
  for (const auto& ref : manifest_.signatures.at(signature).engines) {
    if (ref.backend == backend_) return ref;
  }
  throw Error("signature " + signature + " has no " + backend_ + " engine in this bundle");
}

fs::path Runtime::engine_path(const std::string& signature) const {
  const EngineRef& ref = engine(signature);
  const fs::path path = confine(bundle_, ref.path, "engine of signature " + signature);
  if (!fs::is_regular_file(path)) throw Error("engine " + path.string() + " is missing: the bundle is incomplete, rebuild it");
  if (file_sha256(path) != ref.sha256) {
    throw Error("engine " + path.string() + " is corrupt (sha256 differs from the manifest): rebuild the bundle");
  }
  return path;
}

WeightSet Runtime::weights(const GridEntry& entry) {
  {
    std::lock_guard<std::mutex> lock(anchor_mutex_);
    if (!anchor_) {
      const std::string id = manifest_.anchor["id"].get<std::string>();
      Arrays arrays = load_arrays(confine(bundle_, "anchor/" + id + ".safetensors", "anchor"));
      require_f32(arrays, "anchor");
      try {
        anchor_ = get_family(manifest_.family).anchor(std::move(arrays), manifest_.anchor["plan"]);
      } catch (const Error& exc) {
        throw Error(std::string("bundle anchor plan is malformed: ") + exc.what());
      }
    }
  }
  const Arrays adaptation = load_arrays(confine(bundle_, "deltas/" + entry.adaptation + ".safetensors", "adaptation"));
  require_f32(adaptation, "adaptation");
  const auto& spec = manifest_.signatures.at(entry.signature).spec;
  try {
    return anchor_->weights(spec, adaptation);
  } catch (const Error& exc) {
    throw Error("bundle weights do not fit signature spec " + spec.dump() + ": " + exc.what());
  }
}

std::shared_ptr<Runtime::Loaded> Runtime::load(const GridEntry& entry) {
  const fs::path path = engine_path(entry.signature);
  const std::string& precision = engine(entry.signature).precision;
  const auto& in = manifest_.input.shape;
  const Shape input = {1, in[0], in[1], in[2]};
  auto item = std::make_shared<Loaded>();
  item->runner = get_backend(backend_).open(path, input, {options_.threads, precision});
  const WeightSet weights = this->weights(entry);
  item->runner->bind(weights);
  item->bytes = nbytes(weights);
  // One run on a blank frame: the first real frame on it pays no first-run costs.
  std::vector<float> x(numel(input), 0.0f);
  OutputBuffers outs(item->runner->output_shapes());
  item->runner->run(x.data(), outs.ptrs);
  return item;
}

// An idle engine of the same signature rebound to this weight set where the backend makes
// that cheap (TensorRT refit: one engine per signature in GPU memory), else a fresh load.
std::shared_ptr<Runtime::Loaded> Runtime::rebind_or_load(const GridEntry& entry) {
  if (get_backend(backend_).rebinds_in_place) {
    if (auto idle = pool_->take_idle(entry.signature + "/")) {
      const WeightSet w = weights(entry);
      std::lock_guard<std::mutex> lock(idle->run_mutex);  // orders the bind after its last run
      idle->runner->bind(w);
      idle->bytes = nbytes(w);
      return idle;
    }
  }
  return load(entry);
}

std::shared_ptr<Swap> Runtime::request(Selection sel, const std::string& why, std::optional<double> budget, bool wait) {
  std::shared_ptr<Swap> swap;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && active_) throw Error("the runtime is closed: no more swaps");
    target_ = sel;
    swap = std::make_shared<Swap>(sel, why, budget, ++generation_);
    if (!wait) queue_.push_back(swap);
  }
  if (!wait) {
    queue_cv_.notify_all();
    return swap;
  }
  prepare(swap);
  swap->wait();
  return swap;
}

void Runtime::prepare(const std::shared_ptr<Swap>& swap) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (swap->generation != generation_) return swap->finish("superseded");  // overtaken while queued
  }
  const GridEntry& entry = *swap->selection.entry;
  std::shared_ptr<Loaded> item;
  try {
    std::tie(item, swap->warm) = pool_->get(entry.signature + "/" + entry.adaptation, [&] { return rebind_or_load(entry); });
  } catch (const std::exception& exc) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (swap->generation == generation_ && active_) target_ = active_->selection;  // head for what runs
    }
    return swap->finish("failed", exc.what());
  }
  swap->finish(install(swap, item) ? "active" : "superseded");
}

bool Runtime::install(const std::shared_ptr<Swap>& swap, const std::shared_ptr<Loaded>& item) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (swap->generation != generation_) return false;
  const auto old = active_;
  active_ = std::make_shared<const Active>(Active{swap->selection, item});
  budget_ = swap->budget;
  swap->at_call = started_;
  swap->switched = !old || old->item != item || old->selection.entry != swap->selection.entry;
  if (swap->switched) {
    swaps_.push_back({{"why", swap->why}, {"to", swap->selection.entry->name}, {"signature", swap->selection.entry->signature},
                      {"warm", swap->warm}, {"ms", since_ms(swap->t0_)}, {"at_call", started_}});
  }
  return true;
}

Selection Runtime::run(const float* input, const std::vector<float*>& outputs) {
  return run_since(std::chrono::steady_clock::now(), input, outputs);
}

Selection Runtime::run_frame(const uint8_t* hwc, int height, int width, const std::string& colour_order,
                             const std::vector<float*>& outputs) {
  const auto t0 = std::chrono::steady_clock::now();  // the call includes preprocessing, as in the Python app
  // One buffer per calling thread, reused: a runner wraps an input buffer once, not per frame.
  thread_local std::vector<float> x;
  const auto& s = manifest_.input.shape;
  x.resize(static_cast<size_t>(s[0]) * static_cast<size_t>(s[1]) * static_cast<size_t>(s[2]));
  preprocess(hwc, height, width, colour_order, manifest_.input, x.data());
  return run_since(t0, x.data(), outputs);
}

Selection Runtime::run_since(std::chrono::steady_clock::time_point t0, const float* input,
                             const std::vector<float*>& outputs) {
  std::shared_ptr<const Active> active;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    active = active_;
    ++started_;
  }
  double engine_ms = 0;
  {
    std::lock_guard<std::mutex> lock(active->item->run_mutex);
    const auto e0 = std::chrono::steady_clock::now();
    active->item->runner->run(input, outputs);
    engine_ms = since_ms(e0);
  }
  return record_call(active, since_ms(t0), engine_ms);
}

Selection Runtime::record_call(const std::shared_ptr<const Active>& active, double call_ms, double engine_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++calls_;
  push_recent(call_ms_, call_ms);
  push_recent(engine_ms_, engine_ms);
  return active->selection;
}

std::vector<Shape> Runtime::output_shapes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return active_->item->runner->output_shapes();
}

Selection Runtime::current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return active_->selection;
}

std::optional<double> Runtime::budget_ms() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return budget_;
}

int64_t Runtime::calls() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return calls_;
}

double Runtime::last_call_ms() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return call_ms_.empty() ? NAN : call_ms_.back();
}

double Runtime::last_engine_ms() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return engine_ms_.empty() ? NAN : engine_ms_.back();
}

json Runtime::swap_records() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return swaps_;
}

json Runtime::stats() const {
  std::vector<double> hot, cold, call_ms, engine_ms;
  int64_t calls = 0;
  {  // copied under the lock every call takes; sorted for the percentiles after it
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& s : swaps_) {
      if (s["why"] != "load") (s["warm"].get<bool>() ? hot : cold).push_back(s["ms"].get<double>());
    }
    call_ms.assign(call_ms_.begin(), call_ms_.end());
    engine_ms.assign(engine_ms_.begin(), engine_ms_.end());
    calls = calls_;
  }
  return {{"calls", calls},
          {"call_ms", percentiles(call_ms)},
          {"engine_ms", percentiles(engine_ms)},
          {"swaps", hot.size() + cold.size()},
          {"hot_swaps", hot.size()},
          {"cold_swaps", cold.size()},
          {"hot_swap_ms", percentiles(hot)},
          {"cold_swap_ms", percentiles(cold)},
          {"pool", pool_->stats()}};
}

}  // namespace edgemtl

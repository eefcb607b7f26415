// edgemtl-run: the C++ counterpart of `runtime run`. A source (the bundle's sample
// frames, a video file, an image folder or a V4L2 camera) through a loaded bundle,
// with a schedule of preference and budget switches, headless, writing an overlay
// video, a stats JSON in the Python app's schema and optional per-frame JSON lines.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <iostream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "edgemtl/arrays.hpp"
#include "edgemtl/paths.hpp"
#include "edgemtl/runtime.hpp"
#include "schedule.hpp"

namespace edgemtl {
namespace {

const char* kUsage = R"(usage: edgemtl-run BUNDLE [options]

Runs a source through a compiled bundle with the native runtime (OpenVINO on the CPU;
TensorRT when built), switching sub-networks between frames as a schedule says.

options:
  --source S        'synthetic' (the bundle's sample frames, looped; default), a video file,
                    an image folder, a camera index (0) or a V4L2 device (/dev/video0)
  --frames N        stop after N frames
  --live-fps F      play a file source like a camera at F frames per second: frames that arrive
                    while one is processed are dropped and counted (cameras and stream URLs are
                    always live)
  --backend B       auto (default) or a backend built into this runtime (openvino, tensorrt)
  --threads N       engine threads (default: the backend's)
  --schedule F      schedule JSON ({"events": [...]}, as `runtime run`) or a shipped name (demo)
  --r A,B,C --c X   initial task weights and cost preference
  --budget-ms MS    initial latency budget (needs `runtime calibrate BUNDLE --backend openvino`)
  --out FILE.mp4    overlay video (input and task panels, HUD)
  --stats FILE      run statistics as JSON (the schema of `runtime run --stats`)
  --frames-log F    one JSON line per frame (frame, call_ms, engine_ms, point, signature)
  --wait-swaps      block the frame until a scheduled swap is active (reproducible offline runs)
  -h, --help        this text

Exit codes: 0 done, 2 bad input (the message names it), 1 other failures.
)";

std::atomic<bool> stop_requested{false};

struct Args {
  std::string bundle, source = "synthetic", backend = "auto", schedule, out, stats, frames_log;
  std::optional<int64_t> frames;
  std::optional<std::vector<double>> r;
  double c = 0;
  std::optional<double> budget_ms, live_fps;
  int threads = 0;
  bool wait_swaps = false;
};

double number(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(flag + " expects a number, found '" + text + "'");
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (flag.rfind("--", 0) != 0) {
      if (!a.bundle.empty()) throw Error("expected one BUNDLE, found '" + a.bundle + "' and '" + flag + "'");
      a.bundle = flag;
      continue;
    }
    if (flag == "--wait-swaps") {
      a.wait_swaps = true;
      continue;
    }
    if (i + 1 >= argc) throw Error(flag + " expects a value");
    const std::string v = argv[++i];
    if (flag == "--source") a.source = v;
    else if (flag == "--frames") a.frames = static_cast<int64_t>(number(flag, v));
    else if (flag == "--backend") a.backend = v;
    else if (flag == "--threads") a.threads = static_cast<int>(number(flag, v));
    else if (flag == "--schedule") a.schedule = v;
    else if (flag == "--c") a.c = number(flag, v);
    else if (flag == "--budget-ms") a.budget_ms = number(flag, v);
    else if (flag == "--live-fps") a.live_fps = number(flag, v);
    else if (flag == "--out") a.out = v;
    else if (flag == "--stats") a.stats = v;
    else if (flag == "--frames-log") a.frames_log = v;
    else if (flag == "--r") {
      a.r.emplace();
      std::stringstream parts(v);
      for (std::string p; std::getline(parts, p, ',');) a.r->push_back(number(flag, p));
    } else throw Error("unknown option " + flag + " (see --help)");
  }
  if (a.bundle.empty()) throw Error("expected a BUNDLE folder (see --help)");
  if (a.frames && *a.frames < 1) throw Error("--frames must be a positive number of frames, found " + std::to_string(*a.frames));
  if (a.live_fps && !(*a.live_fps > 0 && std::isfinite(*a.live_fps))) {
    throw Error("live frame rate must be a positive number of frames per second, found " + std::to_string(*a.live_fps));
  }
  return a;
}

// -- sources -------------------------------------------------------------------------------

// Camera indices, V4L2 devices and network streams deliver frames whether or not we keep up.
bool is_live(const std::string& source) {
  return (!source.empty() && std::all_of(source.begin(), source.end(), ::isdigit)) || source.rfind("/dev/video", 0) == 0 ||
         source.find("://") != std::string::npos;
}

class Source {
 public:
  virtual ~Source() = default;
  virtual bool next(cv::Mat& rgb) = 0;             // false at the end
  virtual std::optional<int64_t> length() const = 0;  // frames, when known before the run
};

class Samples : public Source {  // the bundle's samples/frames.safetensors, looped up to a limit
 public:
  Samples(const fs::path& bundle, std::optional<int64_t> limit, bool loop = false) : limit_(limit), loop_(loop) {
    const Arrays arrays = load_arrays(confine(bundle, "samples/frames.safetensors", "sample frames"), false);
    auto it = arrays.find("frames");
    if (it == arrays.end() || it->second.dtype != "U8" || it->second.shape.size() != 4 || it->second.shape[3] != 3 ||
        it->second.shape[0] == 0 || it->second.shape[1] == 0 || it->second.shape[2] == 0) {
      throw Error("sample frames of " + bundle.string() + ": expected a uint8 (N, H, W, 3) array 'frames'");
    }
    frames_ = it->second;
  }
  bool next(cv::Mat& rgb) override {
    const int64_t n = frames_.shape[0];
    if (!loop_ && i_ >= (limit_ ? *limit_ : n)) return false;
    const int h = static_cast<int>(frames_.shape[1]), w = static_cast<int>(frames_.shape[2]);
    rgb = cv::Mat(h, w, CV_8UC3, frames_.data.data() + static_cast<size_t>(i_++ % n) * static_cast<size_t>(h * w * 3)).clone();
    return true;
  }
  std::optional<int64_t> length() const override { return limit_ ? *limit_ : frames_.shape[0]; }

 private:
  Array frames_;
  std::optional<int64_t> limit_;
  bool loop_;
  int64_t i_ = 0;
};

class Folder : public Source {
 public:
  Folder(const fs::path& dir, std::optional<int64_t> limit) {
    for (const auto& e : fs::directory_iterator(dir)) {
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
      if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp") files_.push_back(e.path());
    }
    if (files_.empty()) throw Error("image folder " + dir.string() + " has no ['.bmp', '.jpeg', '.jpg', '.png'] files");
    std::sort(files_.begin(), files_.end());
    if (limit && static_cast<size_t>(*limit) < files_.size()) files_.resize(static_cast<size_t>(*limit));
  }
  bool next(cv::Mat& rgb) override {
    if (i_ >= files_.size()) return false;
    const cv::Mat bgr = cv::imread(files_[i_].string(), cv::IMREAD_COLOR);
    if (bgr.empty()) throw Error("cannot read image " + files_[i_].string());
    ++i_;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    return true;
  }
  std::optional<int64_t> length() const override { return static_cast<int64_t>(files_.size()); }

 private:
  std::vector<fs::path> files_;
  size_t i_ = 0;
};

class Capture : public Source {  // video files, camera indices and V4L2 devices
 public:
  Capture(const std::string& source, std::optional<int64_t> limit) : limit_(limit) {
    const bool index = !source.empty() && std::all_of(source.begin(), source.end(), ::isdigit);
    const bool v4l2 = source.rfind("/dev/video", 0) == 0;
    live_ = is_live(source);
    if (index) cap_.open(std::stoi(source), cv::CAP_V4L2);
    else cap_.open(source, v4l2 ? cv::CAP_V4L2 : cv::CAP_ANY);
    if (!cap_.isOpened()) {
      throw Error("cannot open source '" + source +
                  "': expected a camera index, a V4L2 device, a video file, an image folder or 'synthetic'");
    }
  }
  bool next(cv::Mat& rgb) override {
    cv::Mat bgr;
    if ((limit_ && n_ >= *limit_) || !cap_.read(bgr) || bgr.empty()) return false;
    ++n_;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    return true;
  }
  std::optional<int64_t> length() const override {
    if (live_) return limit_;
    const auto n = static_cast<int64_t>(cap_.get(cv::CAP_PROP_FRAME_COUNT));
    if (n <= 0) return limit_;
    return limit_ ? std::min(n, *limit_) : n;
  }

 private:
  mutable cv::VideoCapture cap_;
  std::optional<int64_t> limit_;
  int64_t n_ = 0;
  bool live_ = false;
};

// Latest-frame delivery from a producer thread, like a camera driver's (runtime/sources.py
// LiveSource): the thread pulls frames (paced at `fps` when given; a camera paces itself); a
// frame not taken before the next one arrives is dropped and counted.
class LiveSource : public Source {
 public:
  LiveSource(std::unique_ptr<Source> inner, std::optional<double> fps, std::optional<int64_t> limit)
      : inner_(std::move(inner)), fps_(fps), limit_(limit) {}
  ~LiveSource() override { stop(); }
  // Stops the producer (after its current read), so that produced() and dropped() stop moving.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  bool next(cv::Mat& rgb) override {
    if (!thread_.joinable()) thread_ = std::thread([this] { produce(); });
    if (limit_ && delivered_ >= *limit_) return false;
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return has_ || done_; });
    if (!has_) {
      if (error_) std::rethrow_exception(error_);
      return false;
    }
    rgb = std::move(frame_);
    has_ = false;
    ++delivered_;
    return true;
  }
  std::optional<int64_t> length() const override { return limit_; }
  int64_t produced() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return produced_;
  }
  int64_t dropped() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return dropped_;
  }

 private:
  void produce() {
    auto due = std::chrono::steady_clock::now();
    const auto period = std::chrono::duration<double>(fps_ ? 1.0 / *fps_ : 0.0);
    try {
      for (cv::Mat f; !stopping() && inner_->next(f);) {
        if (fps_) std::this_thread::sleep_until(due += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period));
        std::lock_guard<std::mutex> lock(mutex_);
        dropped_ += has_;  // the previous one was never taken
        frame_ = std::move(f);  // f is the source's own frame; moved from, the next read allocates afresh
        has_ = true;
        ++produced_;
        cv_.notify_one();
      }
    } catch (...) {
      error_ = std::current_exception();  // re-raised to the consumer
    }
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    cv_.notify_one();
  }
  bool stopping() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stop_;
  }

  std::unique_ptr<Source> inner_;
  std::optional<double> fps_;
  std::optional<int64_t> limit_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::thread thread_;
  cv::Mat frame_;
  bool has_ = false, done_ = false, stop_ = false;
  std::exception_ptr error_;
  int64_t produced_ = 0, dropped_ = 0, delivered_ = 0;
};

// Cameras and streams are live; so is any source given --live-fps (a file played like a camera).
std::unique_ptr<Source> open_source(const Args& a) {
  const bool live = a.live_fps || is_live(a.source);
  std::unique_ptr<Source> inner;
  if (a.source == "synthetic") inner = std::make_unique<Samples>(a.bundle, live ? std::nullopt : a.frames, live);
  else if (fs::is_directory(a.source)) inner = std::make_unique<Folder>(a.source, live ? std::nullopt : a.frames);
  else inner = std::make_unique<Capture>(a.source, live ? std::nullopt : a.frames);
  if (!live) return inner;
  return std::make_unique<LiveSource>(std::move(inner), a.live_fps, a.frames);
}

// -- overlay (runtime/viz.py) ----------------------------------------------------------------

const cv::Vec3b kPalette[] = {{128, 64, 128}, {70, 70, 70},    {220, 20, 60}, {0, 142, 0},     {250, 170, 30},
                              {0, 60, 100},   {119, 11, 32},   {190, 153, 153}, {152, 251, 152}, {70, 130, 180}};

cv::Mat panel(const std::string& kind, const float* out, const Shape& shape, const cv::Mat& frame) {
  const int c = static_cast<int>(shape.size() == 4 ? shape[1] : shape.back());
  const int h = shape.size() == 4 ? static_cast<int>(shape[2]) : 1, w = shape.size() == 4 ? static_cast<int>(shape[3]) : 1;
  const size_t plane = static_cast<size_t>(h) * static_cast<size_t>(w);
  cv::Mat p(h, w, CV_8UC3);
  if (kind == "segmentation") {
    for (size_t i = 0; i < plane; ++i) {
      int best = 0;
      for (int k = 1; k < c; ++k) best = out[static_cast<size_t>(k) * plane + i] > out[static_cast<size_t>(best) * plane + i] ? k : best;
      p.at<cv::Vec3b>(static_cast<int>(i)) = kPalette[best % 10];
    }
    cv::resize(p, p, frame.size(), 0, 0, cv::INTER_NEAREST);
    cv::Mat mixed;
    cv::addWeighted(p, 0.55, frame, 0.45, 0, mixed);
    return mixed;
  }
  if (kind == "normals") {
    for (size_t i = 0; i < plane; ++i) {
      const float x = out[i], y = out[plane + i], z = out[2 * plane + i];
      const float n = std::max(std::sqrt(x * x + y * y + z * z), 1e-6f);
      p.at<cv::Vec3b>(static_cast<int>(i)) = cv::Vec3b(cv::saturate_cast<uchar>((x / n + 1) * 127.5f),
                                                        cv::saturate_cast<uchar>((y / n + 1) * 127.5f),
                                                        cv::saturate_cast<uchar>((z / n + 1) * 127.5f));
    }
  } else {  // regression, depth, binary, classification: the first channel as a heat map
    cv::Mat d(h, w, CV_32F, const_cast<float*>(out));
    cv::Mat u8;
    cv::normalize(d, u8, 0, 255, cv::NORM_MINMAX, CV_8U);
    cv::applyColorMap(255 - u8, p, cv::COLORMAP_TURBO);
    cv::cvtColor(p, p, cv::COLOR_BGR2RGB);
  }
  cv::resize(p, p, frame.size(), 0, 0, cv::INTER_LINEAR);
  return p;
}

cv::Mat compose(const cv::Mat& frame, const Runtime& rt, const std::vector<std::vector<float>>& outs,
                const std::vector<Shape>& shapes, const std::vector<std::string>& hud) {
  std::vector<cv::Mat> panels = {frame.clone()};
  std::vector<std::string> names = {"input"};
  for (size_t t = 0; t < outs.size(); ++t) {
    panels.push_back(panel(rt.manifest().tasks[t].kind, outs[t].data(), shapes[t], frame));
    names.push_back(rt.manifest().tasks[t].name);
  }
  for (size_t i = 0; i < panels.size(); ++i) {
    cv::putText(panels[i], names[i], {3, 12}, cv::FONT_HERSHEY_SIMPLEX, 0.35, {255, 255, 255}, 1, cv::LINE_AA);
  }
  cv::Mat top, canvas;
  cv::hconcat(panels, top);
  cv::Mat strip = cv::Mat::zeros(14 * static_cast<int>(hud.size()) + 6, top.cols, CV_8UC3);
  for (size_t i = 0; i < hud.size(); ++i) {
    cv::putText(strip, hud[i], {4, 14 * static_cast<int>(i) + 13}, cv::FONT_HERSHEY_SIMPLEX, 0.38, {255, 255, 255}, 1, cv::LINE_AA);
  }
  cv::vconcat(top, strip, canvas);
  return canvas;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::vector<std::string> hud(const Runtime& rt, const Selection& sel, double fps, const std::deque<double>& recent) {
  const auto st = percentiles({recent.begin(), recent.end()}, {50, 99});  // the last 300 frames, as the Python HUD
  const auto& sig = rt.manifest().signatures.at(sel.entry->signature);
  const auto& full = rt.manifest().full_net;
  std::string r;
  for (double v : sel.entry->r) r += (r.empty() ? "" : ", ") + fmt("%.2f", v);
  const auto budget = rt.budget_ms();
  return {fmt("%5.1f FPS", fps) + "  engine p50 " + fmt("%.2f", st.value("p50", 0.0)) + " p99 " + fmt("%.2f", st.value("p99", 0.0)) + " ms",
          "r=(" + r + ") c=" + fmt("%.2f", sel.entry->c) + " budget " + (budget ? fmt("%.2f ms", *budget) : "none"),
          "sig " + sig.signature + "  params " + fmt("%.2fx", double(sig.params) / full.value("params", 1.0)) + "  FLOPs " +
              fmt("%.2fx", sig.flops / full.value("flops", 1.0))};
}

// -- per-frame records and segments (runtime/app.py FrameLog) ------------------------------------

class FrameLog {
 public:
  FrameLog(const Manifest& m, const std::string& path) : m_(m) {
    if (!path.empty()) {
      file_.open(path);
      if (!file_) throw Error("--frames-log " + path + ": cannot write it");
    }
  }
  void add(const json& rec) {
    if (file_.is_open()) file_ << rec.dump() << "\n";
    ++frames;
    over_budget += rec["over_budget"].get<bool>();
    if (segments.empty() || segments.back()["point"] != rec["point"]) {
      close_segment();
      segments.push_back(segment(rec));
    }
    segments.back()["last"] = rec["frame"];
    ms_.push_back(rec["engine_ms"].get<double>());
  }
  void close_segment() {
    if (!segments.empty() && !ms_.empty()) segments.back()["engine_p50_ms"] = percentiles(ms_, {50})["p50"];
    ms_.clear();
  }

  int64_t frames = 0, over_budget = 0;
  json segments = json::array();

 private:
  json segment(const json& f) const {
    const auto& e = m_.entry(f["point"].get<std::string>());
    const auto& sig = m_.signatures.at(e.signature);
    return {{"first", f["frame"]}, {"point", e.name}, {"r", e.r}, {"c", e.c}, {"signature", e.signature},
            {"params", double(sig.params) / m_.full_net.value("params", 1.0)}, {"flops", sig.flops / m_.full_net.value("flops", 1.0)}};
  }
  const Manifest& m_;
  std::ofstream file_;
  std::vector<double> ms_;
};

struct Pending {
  int64_t requested;
  std::shared_ptr<Swap> swap;
};

std::vector<Pending> apply_events(Runtime& rt, const std::vector<Event>& events, int64_t frame, bool wait) {
  std::vector<Pending> out;
  for (const auto& ev : events) {
    if (ev.r) out.push_back({frame, rt.set_preference(*ev.r, *ev.c, false)});
    if (ev.budget_ms) out.push_back({frame, rt.set_budget(*ev.budget_ms, ev.r, false)});
  }
  if (wait && !out.empty()) out.back().swap->wait();  // the last request supersedes the others; a failure stops the run
  return out;
}

json swap_records(const std::vector<Pending>& pending, int64_t calls_before) {
  json out = json::array();
  for (const auto& [requested, sw] : pending) {
    const std::string state = sw->state();
    if (state == "active" && !sw->switched) continue;  // the event selected the point already running
    json rec = {{"requested", requested}, {"state", state}, {"to", sw->selection.entry->name}, {"why", sw->why}};
    if (state == "active") {
      rec.update({{"frame", sw->at_call - calls_before}, {"signature", sw->selection.entry->signature}, {"warm", sw->warm}, {"ms", sw->ms}});
    }
    if (state == "failed") {
      try {
        sw->wait();
      } catch (const Error& exc) {
        rec["error"] = exc.what();
      }
    }
    out.push_back(rec);
  }
  return out;
}

void write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << text;
    if (!f) throw Error("cannot write " + path);
  }
  fs::rename(tmp, path);
}

void check_target(const std::string& path, const std::string& flag) {
  if (path.empty()) return;
  const fs::path p = fs::absolute(path);
  if (fs::is_directory(p)) throw Error(flag + " " + path + " is a folder; expected a file path");
  if (!fs::is_directory(p.parent_path())) {
    throw Error(flag + " " + path + ": its folder " + p.parent_path().string() + " does not exist or is not writable");
  }
}

// One run of a source through the runtime: what runtime/app.py's run_stream does.
class Stream {
 public:
  explicit Stream(const Args& a)
      : a_(a),
        schedule_(a.schedule.empty() ? Schedule{} : load_schedule(a.schedule, EDGEMTL_SCHEDULE_DIR)),
        rt_(a.bundle, options(a)),
        source_(open_source(a)),
        live_(dynamic_cast<LiveSource*>(source_.get())),
        log_(rt_.manifest(), a.frames_log) {
    check_schedule(schedule_, rt_.manifest().tasks.size(), a.schedule, source_->length());
    if (a.r) rt_.set_preference(*a.r, a.c);
    if (a.budget_ms) rt_.set_budget(*a.budget_ms);
    calls_before_ = rt_.calls();
  }

  void run() {
    const auto t_start = std::chrono::steady_clock::now();
    cv::Mat frame;
    for (int64_t i = 0; source_->next(frame); ++i) {
      if (stop_requested) {
        interrupted_ = true;
        break;
      }
      if (auto it = schedule_.find(i); it != schedule_.end()) {
        for (auto& p : apply_events(rt_, it->second, i, a_.wait_swaps)) pending_.push_back(p);
      }
      const Selection sel = infer(i, frame);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
      if (!a_.out.empty()) write_video(frame, sel, static_cast<double>(log_.frames) / std::max(seconds, 1e-9));
    }
    writer_.release();
    log_.close_segment();
    if (live_) live_->stop();  // the counts in result() are final
    rt_.close();  // a swap still queued ends superseded, as when the Python app closes its runtime
  }

  json result() const {  // the schema of runtime/app.py's result()
    return {{"bundle", a_.bundle}, {"source", a_.source}, {"backend", rt_.backend()}, {"segments", log_.segments},
            {"backend_reason", rt_.backend_reason()}, {"interrupted", interrupted_}, {"frames", log_.frames},
            {"processed", log_.frames}, {"over_budget", log_.over_budget}, {"live", live_ != nullptr},
            {"produced", live_ ? live_->produced() : log_.frames}, {"dropped", live_ ? live_->dropped() : 0}, {"video", a_.out.empty() ? json() : json(a_.out)}, {"video_frames", written_},
            {"swaps", swap_records(pending_, calls_before_)}, {"summary", rt_.stats()},
            {"frames_log", a_.frames_log.empty() ? json() : json(a_.frames_log)}};
  }

 private:
  static Options options(const Args& a) {
    Options o;
    o.backend = a.backend;
    o.threads = a.threads;
    return o;
  }

  Selection infer(int64_t i, const cv::Mat& frame) {
    shapes_ = rt_.output_shapes();
    outs_.resize(shapes_);
    const Selection sel = rt_.run_frame(frame.data, frame.rows, frame.cols, "RGB", outs_.ptrs);
    const auto budget = rt_.budget_ms();
    const double call_ms = rt_.last_call_ms(), engine_ms = rt_.last_engine_ms();
    recent_.push_back(engine_ms);
    if (recent_.size() > 300) recent_.pop_front();
    log_.add({{"frame", i}, {"call_ms", call_ms}, {"engine_ms", engine_ms}, {"point", sel.entry->name},
              {"signature", sel.entry->signature}, {"over_budget", budget && call_ms > *budget}});
    return sel;
  }

  void write_video(const cv::Mat& frame, const Selection& sel, double fps) {
    cv::Mat bgr;
    cv::cvtColor(compose(frame, rt_, outs_.data, shapes_, hud(rt_, sel, fps, recent_)), bgr, cv::COLOR_RGB2BGR);
    if (!writer_.isOpened() && !writer_.open(a_.out, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), 15, bgr.size())) {
      throw Error("cannot write video " + a_.out);
    }
    writer_.write(bgr);
    ++written_;
  }

  const Args& a_;
  const Schedule schedule_;
  Runtime rt_;
  std::unique_ptr<Source> source_;
  LiveSource* live_;  // source_ when it is live, else null
  FrameLog log_;
  std::vector<Pending> pending_;
  cv::VideoWriter writer_;
  std::vector<Shape> shapes_;
  OutputBuffers outs_;
  std::deque<double> recent_;  // engine ms of the last 300 frames (HUD)
  int64_t calls_before_ = 0, written_ = 0;
  bool interrupted_ = false;
};

void print_summary(const json& result) {
  const auto& summary = result["summary"];
  std::printf("%lld frames on %s: call p50 %.3f ms, engine p50 %.3f ms, %zu swaps%s\n", result["frames"].get<long long>(),
              result["backend"].get<std::string>().c_str(), summary["call_ms"].value("p50", 0.0),
              summary["engine_ms"].value("p50", 0.0), result["swaps"].size(), result["interrupted"].get<bool>() ? " (interrupted)" : "");
  for (const auto& s : result["segments"]) {
    std::printf("  frames %5lld-%-5lld %-24s params %.2fx FLOPs %.2fx engine p50 %.3f ms\n", s["first"].get<long long>(),
                s["last"].get<long long>(), s["point"].get<std::string>().c_str(), s["params"].get<double>(),
                s["flops"].get<double>(), s.value("engine_p50_ms", 0.0));
  }
}

int run(const Args& a) {
  for (const auto& [flag, path] : {std::pair<std::string, std::string>{"--out", a.out}, {"--stats", a.stats}, {"--frames-log", a.frames_log}}) {
    check_target(path, flag);
  }
  Stream stream(a);
  stream.run();
  const json result = stream.result();
  if (!a.stats.empty()) write_atomically(a.stats, result.dump(1));
  print_summary(result);
  return 0;
}

}  // namespace
}  // namespace edgemtl

int main(int argc, char** argv) {
  std::signal(SIGINT, [](int) { edgemtl::stop_requested = true; });
  std::signal(SIGTERM, [](int) { edgemtl::stop_requested = true; });
  try {
    return edgemtl::run(edgemtl::parse(argc, argv));
  } catch (const edgemtl::Error& exc) {
    std::fprintf(stderr, "edgemtl-run: error: %s\n", exc.what());
    return 2;
  } catch (const std::exception& exc) {
    std::fprintf(stderr, "edgemtl-run: failed: %s\n", exc.what());
    return 1;
  }
}

// The runtime over a real bundle: preference and budget picks, swaps under two threads
// (every output must come from the sub-network the call reports), superseded loads,
// backend refusals, the slim-width family.
#include <atomic>
#include <functional>
#include <thread>

#include "edgemtl/runtime.hpp"
#include "fixture.hpp"

namespace edgemtl {
namespace {

using test::expect_error;

Options openvino(int threads = 1) {
  Options o;
  o.backend = "openvino";
  o.threads = threads;
  return o;
}

using Outputs = OutputBuffers;

std::vector<float> input(const Runtime& rt, float seed) {
  const auto& s = rt.manifest().input.shape;
  std::vector<float> x(static_cast<size_t>(s[0] * s[1] * s[2]));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(seed + 0.37f * static_cast<float>(i));
  return x;
}

// Two grid points with different signatures.
std::pair<const GridEntry*, const GridEntry*> two_points(const Manifest& m) {
  for (const auto& e : m.grid) {
    if (e.signature != m.grid[0].signature) return {&m.grid[0], &e};
  }
  throw Error("the fixture bundle has one signature");
}

TEST(Runtime, PreferencePicksTheNearestPoint) {
  Runtime rt(test::fixture() / "tree", openvino());
  for (const auto& e : rt.manifest().grid) {
    rt.set_preference(e.r, e.c);
    EXPECT_EQ(rt.current().entry->name, e.name);
    EXPECT_EQ(rt.current().reason, "exact grid point");
  }
  rt.set_preference({0.34, 0.33, 0.33}, 0.01);
  EXPECT_NE(rt.current().reason.find("nearest grid point"), std::string::npos);
  expect_error([&] { rt.set_preference({0.5, 0.5}, 0.0); }, "r must have 3 entries");
}

TEST(Runtime, BudgetPicksFromTheLatencyTable) {
  Runtime rt(test::fixture() / "tree", openvino());  // the fixture's table: signature i takes i + 1 ms
  const auto table = rt.latency_table();
  const auto swap = rt.set_budget(1e6, std::vector<double>{1.0, 0.0, 0.0});
  EXPECT_TRUE(swap->selection.fits);
  EXPECT_DOUBLE_EQ(rt.budget_ms().value(), 1e6);
  const auto fastest = rt.set_budget(0.5);
  EXPECT_FALSE(fastest->selection.fits);
  EXPECT_DOUBLE_EQ(table.at(fastest->selection.entry->signature), 1.0);
  expect_error([&] { rt.set_budget(-1.0); }, "budget must be a positive number");
  rt.set_preference({1.0, 0.0, 0.0}, 0.0);
  EXPECT_FALSE(rt.budget_ms().has_value());
}

TEST(Runtime, SwapsUnderTwoThreadsNeverMixSubNetworks) {
  Runtime rt(test::fixture() / "tree", openvino());
  const auto [a, b] = two_points(rt.manifest());
  const std::vector<float> x = input(rt, 0.3f);
  std::map<std::string, std::vector<std::vector<float>>> reference;
  for (const GridEntry* e : {a, b}) {
    rt.set_preference(e->r, e->c);
    Outputs o(rt.output_shapes());
    rt.run(x.data(), o.ptrs);
    reference[e->name] = o.data;
  }
  ASSERT_NE(reference[a->name], reference[b->name]);

  std::atomic<bool> done{false};
  std::atomic<int> mismatches{0}, calls{0}, calls_on_a{0};
  std::set<std::string> seen;
  std::thread runner([&] {
    Outputs o(rt.output_shapes());
    while (!done) {
      const Selection sel = rt.run(x.data(), o.ptrs);
      seen.insert(sel.entry->name);
      mismatches += o.data != reference.at(sel.entry->name);
      calls_on_a += sel.entry == a;
      ++calls;
    }
  });
  // Progress is awaited, not slept for: a loaded CI machine may not schedule the runner thread.
  const auto until = [](const std::function<bool()>& ok) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!ok() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  };
  until([&] { return calls > 0; });  // it ran on b, the current point, before any request
  std::vector<std::shared_ptr<Swap>> swaps;
  for (int i = 0; i < 20; ++i) {
    const GridEntry* e = i % 2 ? a : b;
    swaps.push_back(rt.set_preference(e->r, e->c, false));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  swaps.back()->wait();
  until([&] { return calls_on_a > 0; });
  done = true;
  runner.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(rt.current().entry->name, a->name);  // the last request (i = 19) wins
  for (const auto& s : swaps) EXPECT_TRUE(s->state() == "active" || s->state() == "superseded") << s->state();
  const json stats = rt.stats();
  EXPECT_GT(stats["calls"].get<int64_t>(), 0);
  EXPECT_GE(stats["hot_swaps"].get<int64_t>(), 1);  // the second visit of a point is warm
}

TEST(Runtime, BackgroundSwapKeepsRunningTheOldPoint) {
  Runtime rt(test::fixture() / "tree", openvino());
  const auto [a, b] = two_points(rt.manifest());
  rt.set_preference(a->r, a->c);
  const auto swap = rt.set_preference(b->r, b->c, false);
  Outputs o(rt.output_shapes());
  const std::vector<float> x = input(rt, 1.0f);
  const Selection first = rt.run(x.data(), o.ptrs);  // runs on a or, if the load already finished, b
  EXPECT_TRUE(first.entry == a || first.entry == b);
  EXPECT_EQ(swap->wait().entry, b);
  EXPECT_EQ(rt.run(x.data(), o.ptrs).entry, b);
  const auto queued = rt.set_preference(a->r, a->c, false);
  rt.close();  // the queued swap is superseded or, if its load had started, finished
  EXPECT_TRUE(queued->done());
  EXPECT_TRUE(queued->state() == "superseded" || queued->state() == "active") << queued->state();
  EXPECT_NO_THROW(rt.run(x.data(), o.ptrs));  // calls keep running after close
  expect_error([&] { rt.set_preference(b->r, b->c); }, "the runtime is closed");
}

TEST(Runtime, BackendRefusals) {
  Options trt;
  trt.backend = "tensorrt";
  expect_error([&] { Runtime rt(test::fixture() / "tree", trt); }, "bundle has no tensorrt engines");
  Options bad = openvino();
  bad.latency_stat = "p75";
  expect_error([&] { Runtime rt(test::fixture() / "tree", bad); }, "latency statistic must be one of");
}

TEST(Runtime, MissingOrCorruptEngineIsRefused) {
  const fs::path dir = test::scratch("bundle");
  fs::copy(test::fixture() / "tree", dir / "b", fs::copy_options::recursive);
  const Manifest m = load_manifest(dir / "b");
  for (const auto& [sig, info] : m.signatures) std::ofstream(dir / "b" / info.engines.at(0).path, std::ios::app) << "x";
  expect_error([&] { Runtime rt(dir / "b", openvino()); }, "is corrupt (sha256 differs from the manifest)");
  for (const auto& [sig, info] : m.signatures) fs::remove(dir / "b" / info.engines.at(0).path);
  expect_error([&] { Runtime rt(dir / "b", openvino()); }, "is missing: the bundle is incomplete");
}

TEST(Runtime, SlimWidthBundleRuns) {
  Runtime rt(test::fixture() / "slim", openvino());
  for (const auto& e : rt.manifest().grid) {
    rt.set_preference(e.r, e.c);
    Outputs o(rt.output_shapes());
    const std::vector<float> x = input(rt, 0.1f);
    rt.run(x.data(), o.ptrs);
    for (const auto& d : o.data) {
      for (float v : d) ASSERT_TRUE(std::isfinite(v));
    }
  }
}

}  // namespace
}  // namespace edgemtl

// The manifest refusals of tests/runtime/test_manifest.py, case for case, plus paths.
#include <functional>

#include <unistd.h>

#include "edgemtl/manifest.hpp"
#include "edgemtl/paths.hpp"
#include "fixture.hpp"

namespace edgemtl {
namespace {

using test::expect_error;

json raw() { return test::read_json(test::fixture() / "tree" / "manifest.json"); }
json& engine0(json& d) { return d["signatures"].begin().value()["engines"][0]; }
json& sig0(json& d) { return d["signatures"].begin().value(); }

TEST(Manifest, CompiledBundleLoads) {
  const Manifest m = load_manifest(test::fixture() / "tree");
  EXPECT_EQ(m.grid.size(), 21u);
  ASSERT_EQ(m.tasks.size(), 3u);
  EXPECT_EQ(m.tasks[0].name, "semseg");
  EXPECT_EQ(m.input.shape, (std::array<int, 3>{3, 16, 16}));
  for (const auto& e : m.grid) {
    EXPECT_TRUE(m.signatures.count(e.signature));
    double sum = 0;
    for (double v : e.r) sum += v;
    EXPECT_NEAR(sum, 1.0, 1e-12);
  }
  EXPECT_EQ(load_manifest(test::fixture() / "slim").family, "slim-width");
}

struct Case {
  std::string name;
  std::function<void(json&)> edit;
  std::string message;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }  // ctest lists the case by name

class Refusals : public ::testing::TestWithParam<Case> {};

TEST_P(Refusals, NameTheProblem) {
  json d = raw();
  GetParam().edit(d);
  expect_error([&] { manifest_from_json(d); }, GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    SameAsPython, Refusals,
    ::testing::Values(
        Case{"newer_version", [](json& d) { d["format_version"] = kFormatVersion + 1; }, "update the runtime"},
        Case{"older_version", [](json& d) { d["format_version"] = 2; }, "rebuild the bundle with compiler >= 0.3.0"},
        Case{"format", [](json& d) { d["format"] = "something.else"; }, "not a bundle manifest"},
        Case{"tasks", [](json& d) { d.erase("tasks"); }, "lacks 'tasks'"},
        Case{"signature", [](json& d) { d["grid"][0]["signature"] = "feedbeef"; }, "not among the bundle's signatures"},
        Case{"nan", [](json& d) { d["grid"][0]["r"] = {NAN, 0.5, 0.5}; }, "r[0] must be finite"},
        Case{"c", [](json& d) { d["grid"][0]["c"] = 1.5; }, "c must be in [0, 1]"},
        Case{"shape", [](json& d) { d["input"]["shape"] = {16, 16}; }, "input.shape must be [C, H, W]"},
        Case{"grid", [](json& d) { d["grid"] = json::array(); }, "grid is empty"},
        Case{"family", [](json& d) { d["family"] = "slim"; }, "unknown model family 'slim'"},
        Case{"path_up", [](json& d) { engine0(d)["path"] = "../../etc/passwd"; }, "engines[0].path: expected a relative path"},
        Case{"path_abs", [](json& d) { engine0(d)["path"] = "/etc/passwd"; }, "engines[0].path: expected a relative path"},
        Case{"device", [](json& d) { engine0(d)["device"] = "../../x"; }, "engines[0].device: expected name"},
        Case{"adaptation", [](json& d) { d["grid"][0]["adaptation"] = "../../../etc/x"; }, "grid[0].adaptation: expected hex16"},
        Case{"hypernets", [](json& d) { d["hypernets"] = {{"graph", "/tmp/h.onnx"}, {"plan", "p"}}; }, "hypernets.graph: expected"},
        Case{"tree", [](json& d) { sig0(d)["tree"] = {{0, 9}}; }, "is not a dymu-tree spec"},
        Case{"hash", [](json& d) { sig0(d)["signature"] = std::string(16, '0'); }, "has signature"},
        Case{"anchor", [](json& d) { d["anchor"]["id"] = "../anchor"; }, "anchor.id: expected hex16"}),
    [](const auto& info) { return info.param.name; });

TEST(Manifest, MissingOrBrokenFile) {
  const fs::path dir = test::scratch("manifest");
  expect_error([&] { load_manifest(dir); }, "not a bundle");
  std::ofstream(dir / "manifest.json") << "{nope";
  expect_error([&] { load_manifest(dir); }, "not valid JSON");
}

TEST(Paths, RelativePathsAndIds) {
  for (const char* bad : {"", "/etc/passwd", "a/../../b", "./a", "a\\b", "c:x"}) {
    expect_error([&] { check_relative(json(bad), "field"); }, "field: expected a relative path");
  }
  EXPECT_EQ(check_relative(json("engines/a.onnx"), "f"), "engines/a.onnx");
  expect_error([&] { check_id(json("0123456789abcdeF"), "hex16", "id"); }, "id: expected hex16");
  expect_error([&] { check_id(json(7), "name", "backend"); }, "backend: expected name");
}

TEST(Paths, SymlinkOutOfTheFolderIsRefused) {
  const fs::path dir = test::scratch("confine");
  fs::create_directory_symlink("/etc", dir / "engines");
  expect_error([&] { confine(dir, "engines/passwd", "engine"); }, "leaves");
  fs::create_directories(dir / "inside");
  EXPECT_EQ(confine(dir, "inside/x", "engine"), fs::weakly_canonical(dir) / "inside" / "x");
}

TEST(Preferences, ValidatedAndNormalised) {
  const Preference p = validate_preference(json({0.5, 0.25, 0.25}), json(0.5), 3);
  EXPECT_DOUBLE_EQ(p.r[0], 0.5);
  expect_error([] { validate_preference(json({0.5, 0.5}), json(0.0), 3); }, "r must have 3 entries");
  expect_error([] { validate_preference(json({0.5, 0.6, 0.0}), json(0.0), 3); }, "r must sum to 1");
  expect_error([] { validate_preference(json({-0.5, 1.0, 0.5}), json(0.0), 3); }, "r[0] must be >= 0");
  expect_error([] { validate_preference(json({1.0, 0.0, 0.0}), json("x"), 3); }, "c must be a finite number");
}

}  // namespace
}  // namespace edgemtl

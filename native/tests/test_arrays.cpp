// Content-addressed safetensors files and the folding: ids as Python computes them,
// tampered files refused, weight sets equal to the Python runtime's bit for bit.
#include <cstring>

#include "edgemtl/arrays.hpp"
#include "edgemtl/family.hpp"
#include "edgemtl/manifest.hpp"
#include "edgemtl/paths.hpp"
#include "fixture.hpp"

namespace edgemtl {
namespace {

using test::expect_error;

fs::path anchor_file(const fs::path& bundle) {
  const json m = test::read_json(bundle / "manifest.json");
  return bundle / "anchor" / (m["anchor"]["id"].get<std::string>() + ".safetensors");
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

TEST(Arrays, AnchorHashesToItsName) {
  const fs::path path = anchor_file(test::fixture() / "tree");
  const Arrays arrays = load_arrays(path);
  EXPECT_EQ(arrays_id(arrays), path.stem().string());
  EXPECT_FALSE(arrays.empty());
}

TEST(Arrays, TamperedFilesAreRefused) {
  const fs::path src = anchor_file(test::fixture() / "tree");
  const fs::path dir = test::scratch("arrays");
  const std::string bytes = read_bytes(src);
  const fs::path copy = dir / src.filename();

  std::string flipped = bytes;
  flipped[flipped.size() - 3] ^= 0x40;  // one weight's last bytes
  write_bytes(copy, flipped);
  expect_error([&] { load_arrays(copy); }, "is corrupt: its content hashes to");

  write_bytes(copy, bytes.substr(0, 5));
  expect_error([&] { load_arrays(copy); }, "corrupt or not a safetensors file");

  std::string huge = bytes;
  const uint64_t n = bytes.size();  // header length pointing past the end
  std::memcpy(huge.data(), &n, 8);
  write_bytes(copy, huge);
  expect_error([&] { load_arrays(copy); }, "header length beyond the file");

  write_bytes(copy, bytes.substr(0, bytes.size() - 4));  // data shorter than the header says
  expect_error([&] { load_arrays(copy); }, "outside the file");
  expect_error([&] { load_arrays(dir / "0123456789abcdef.safetensors"); }, "is missing");

  auto crafted = [&](const std::string& header) {  // a header of our own, no data
    std::string bytes(8, '\0');
    const uint64_t len = header.size();
    std::memcpy(bytes.data(), &len, 8);
    write_bytes(copy, bytes + header);
  };
  crafted(R"({"w": {"dtype": "F32", "shape": [1099511627776, 16777216], "data_offsets": [0, 0]}})");
  expect_error([&] { load_arrays(copy, false); }, "is too large");  // 2^64 elements would wrap to 0
  crafted(R"({"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}})");
  expect_error([&] { load_arrays(copy, false); }, "is not a list");
  crafted(R"({"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}})");
  expect_error([&] { load_arrays(copy, false); }, "unknown dtype");
}

TEST(Fold, WeightSetsEqualPythonBitForBit) {
  const fs::path bundle = test::fixture() / "tree";
  const Manifest m = load_manifest(bundle);
  const Arrays ref = load_arrays(test::fixture() / "tree-weights.safetensors", false);
  auto anchor = get_family(m.family).anchor(load_arrays(anchor_file(bundle)), m.anchor["plan"]);
  size_t compared = 0;
  for (size_t i = 0; i < 2; ++i) {
    const GridEntry& e = m.grid[i];
    const Arrays adaptation = load_arrays(bundle / "deltas" / (e.adaptation + ".safetensors"));
    const WeightSet w = anchor->weights(m.signatures.at(e.signature).spec, adaptation);
    EXPECT_EQ(w.size(), m.signatures.at(e.signature).weight_names.size());
    for (const auto& [name, a] : w) {
      const auto it = ref.find(e.name + "|" + name);
      ASSERT_NE(it, ref.end()) << name;
      EXPECT_EQ(a.shape, it->second.shape) << name;
      EXPECT_EQ(a.data, it->second.data) << name;
      ++compared;
    }
  }
  EXPECT_EQ(compared, ref.size());
}

TEST(Family, SignaturesMatchThePythonHash) {
  // edgecore.tree.tree_signature([[0, 0], [1, 1]]) and widths_signature([50, 25, 100])
  EXPECT_EQ(tree_signature(json({{0, 0}, {1, 1}})), sha256_hex("v1:N=2:-1,0|1,1").substr(0, 16));
  EXPECT_EQ(canonical_tree(json({{0, 0}, {1, 1}})), json({{-1, 0}, {1, 1}}));
  EXPECT_EQ(widths_signature(json({50, 25, 100})), sha256_hex("slim:50,25,100").substr(0, 16));
  expect_error([] { canonical_tree(json({{0, 2}})); }, "out of range");
  expect_error([] { canonical_widths(json({50, 0, 100})); }, "integer percentages");
}

}  // namespace
}  // namespace edgemtl

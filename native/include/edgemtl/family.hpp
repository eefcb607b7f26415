// Model families (edgecore/family.py, tree.py, widths.py, fold.py): how a bundle's
// sub-network specs are checked and hashed, and how a sub-network's weights are
// folded from the anchor stored once in the bundle. The folding repeats numpy's
// float64 arithmetic operation by operation (fold.cpp is built without FMA
// contraction), so a weight set equals the Python runtime's bit for bit.
#pragma once

#include <memory>
#include <vector>

#include "edgemtl/arrays.hpp"

namespace edgemtl {

using WeightSet = Arrays;  // folded float32 tensors by initializer name

// A bundle's anchor: `weights(spec, adaptation)` folds one sub-network's weight set.
class Anchor {
 public:
  virtual ~Anchor() = default;
  virtual WeightSet weights(const json& spec, const Arrays& adaptation) const = 0;
};

struct Family {
  std::string name;
  json (*canonical)(const json& spec);  // Error if malformed
  std::string (*signature)(const json& spec);
  std::unique_ptr<Anchor> (*anchor)(Arrays arrays, const json& plan);
};

extern const char* const kDefaultFamily;  // "dymu-tree": bundles that do not name a family
const Family& get_family(const std::string& name);

// dymu-tree helpers, exposed for tests.
json canonical_tree(const json& parents);
std::string tree_signature(const json& parents);
json canonical_widths(const json& spec);
std::string widths_signature(const json& spec);

}  // namespace edgemtl

#include "edgemtl/family.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace edgemtl {

const char* const kDefaultFamily = "dymu-tree";

namespace {

// -- dymu-tree ---------------------------------------------------------------------------

using Tree = std::vector<std::vector<int>>;

Tree as_tree(const json& parents) {
  if (!parents.is_array() || parents.empty() || !parents[0].is_array() || parents[0].empty()) {
    throw Error("a tree needs at least one layer and one task");
  }
  const size_t n = parents[0].size();
  Tree tree;
  for (size_t layer = 0; layer < parents.size(); ++layer) {
    const auto& row = parents[layer];
    if (!row.is_array() || row.size() != n) {
      throw Error("tree layer " + std::to_string(layer) + " has " + std::to_string(row.is_array() ? row.size() : 0) +
                  " parents, expected " + std::to_string(n));
    }
    tree.emplace_back();
    for (const auto& p : row) {
      if (!p.is_number_integer() || p.get<long long>() < -1 || p.get<long long>() >= static_cast<long long>(n)) {
        throw Error("tree layer " + std::to_string(layer) + ": parent " + repr(p) + " is out of range, expected -1.." +
                    std::to_string(n - 1));
      }
      tree.back().push_back(p.get<int>());
    }
  }
  return tree;
}

std::vector<std::vector<bool>> used_nodes(const Tree& parents) {
  const size_t n = parents[0].size();
  std::vector<std::vector<bool>> used(parents.size() + 1, std::vector<bool>(n, false));
  used.back().assign(n, true);
  for (size_t layer = parents.size(); layer-- > 0;) {
    for (size_t child = 0; child < n; ++child) {
      const int parent = parents[layer][child];
      if (used[layer + 1][child] && parent >= 0) used[layer][static_cast<size_t>(parent)] = true;
    }
  }
  return used;
}

std::string tree_text(const json& canonical) {
  std::string body;
  for (size_t l = 0; l < canonical.size(); ++l) {
    if (l) body += "|";
    for (size_t j = 0; j < canonical[l].size(); ++j) body += (j ? "," : "") + std::to_string(canonical[l][j].get<int>());
  }
  return "v1:N=" + std::to_string(canonical[0].size()) + ":" + body;
}

// -- folding (edgecore/fold.py) ------------------------------------------------------------

struct Pair {
  std::string conv, bn;
  double eps;
};

const Array& need(const Arrays& params, const std::string& key, const std::string& who) {
  auto it = params.find(key);
  if (it == params.end()) throw Error(who + "lacks '" + key + "' for this sub-network");
  return it->second;
}

const Array* maybe(const Arrays* arrays, const std::string& key) {
  if (arrays == nullptr) return nullptr;
  auto it = arrays->find(key);
  return it == arrays->end() ? nullptr : &it->second;
}

std::vector<double> as_f64(const Array& a, size_t n, const std::string& name) {
  if (a.numel() != n || a.shape.size() != 1) {
    throw Error("fold_conv_bn: " + name + " must have shape (" + std::to_string(n) + ",)");
  }
  const float* p = a.f32(name);
  return std::vector<double>(p, p + n);
}

// W_f = W * s, b_f = (b - mu) * s + beta', s = gamma' / sqrt(var + eps), in float64 as numpy does.
void fold_pair(const Arrays& params, const Pair& pr, const Arrays* deltas, const std::string& prefix, WeightSet& out,
               const std::string& who) {
  const Array& w = need(params, pr.conv + ".weight", who);
  if (w.shape.empty() || w.shape[0] <= 0) throw Error(who + pr.conv + ".weight has no output channels");
  const size_t out_ch = static_cast<size_t>(w.shape[0]);
  auto vec = [&](const std::string& key) { return as_f64(need(params, pr.bn + "." + key, who), out_ch, key); };
  std::vector<double> gamma = vec("weight"), beta = vec("bias"), mean = vec("running_mean"), var = vec("running_var");
  const Array* dg = maybe(deltas, pr.bn + ".weight");
  const Array* db = maybe(deltas, pr.bn + ".bias");
  const Array* bias = maybe(&params, pr.conv + ".bias");
  std::vector<double> g0 = dg ? as_f64(*dg, out_ch, "dgamma") : std::vector<double>(out_ch, 0.0);
  std::vector<double> b1 = db ? as_f64(*db, out_ch, "dbeta") : std::vector<double>(out_ch, 0.0);
  std::vector<double> b0 = bias ? as_f64(*bias, out_ch, "bias") : std::vector<double>(out_ch, 0.0);
  Array wf{"F32", w.shape, std::vector<uint8_t>(w.data.size())};
  Array bf{"F32", {static_cast<int64_t>(out_ch)}, std::vector<uint8_t>(out_ch * 4)};
  const float* src = w.f32(pr.conv + ".weight");
  float* dst = reinterpret_cast<float*>(wf.data.data());
  float* bdst = reinterpret_cast<float*>(bf.data.data());
  const size_t per = w.numel() / out_ch;
  for (size_t o = 0; o < out_ch; ++o) {
    const double g = gamma[o] + g0[o];
    const double b_bn = beta[o] + b1[o];
    const double scale = g / std::sqrt(var[o] + pr.eps);
    for (size_t k = 0; k < per; ++k) dst[o * per + k] = static_cast<float>(static_cast<double>(src[o * per + k]) * scale);
    bdst[o] = static_cast<float>((b0[o] - mean[o]) * scale + b_bn);
  }
  out[prefix + pr.conv + ".weight"] = std::move(wf);
  out[prefix + pr.conv + ".bias"] = std::move(bf);
}

void fold_params(const Arrays& params, const std::vector<Pair>& pairs, const Arrays* deltas, const std::string& prefix,
                 WeightSet& out, const std::string& who) {
  std::set<std::string> consumed;
  for (const auto& pr : pairs) {
    fold_pair(params, pr, deltas, prefix, out, who);
    consumed.insert({pr.conv + ".weight", pr.conv + ".bias"});
    for (const char* k : {"weight", "bias", "running_mean", "running_var"}) consumed.insert(pr.bn + "." + k);
  }
  for (const auto& [k, v] : params) {
    if (!consumed.count(k)) out[prefix + k] = v;
  }
}

std::vector<Pair> parse_pairs(const json& list, const std::string& module) {
  std::vector<Pair> pairs;
  if (!list.is_array()) throw Error(module + ": fold pairs must be a list, found " + repr(list));
  for (const auto& p : list) {
    const bool ok = p.is_array() && p.size() == 3 && p[0].is_string() && p[1].is_string() && p[2].is_number();
    if (!ok) throw Error(module + ": a fold pair is [conv, bn, eps], found " + repr(p));
    pairs.push_back({p[0].get<std::string>(), p[1].get<std::string>(), p[2].get<double>()});
  }
  return pairs;
}

std::pair<std::string, std::string> split_key(const std::string& key) {  // "<module>/<param>"
  const auto slash = key.rfind('/');
  if (slash == std::string::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

struct Module {
  Arrays arrays;
  std::vector<Pair> pairs;
};

class TreeAnchor : public Anchor {
 public:
  TreeAnchor(Arrays arrays, const json& plan) {
    if (!plan.is_object() || !plan.contains("pairs") || !plan["pairs"].is_object()) {
      throw Error("a dymu-tree anchor plan is {'pairs': {module: [[conv, bn, eps], ...]}}");
    }
    std::map<std::string, Arrays> by_module;
    for (auto& [key, a] : arrays) {
      auto [module, name] = split_key(key);
      by_module[module][name] = std::move(a);
    }
    for (const auto& [module, list] : plan["pairs"].items()) modules_[module] = {by_module[module], parse_pairs(list, module)};
  }

  WeightSet weights(const json& spec, const Arrays& adaptation) const override {
    std::map<std::string, Arrays> deltas;
    for (const auto& [key, a] : adaptation) {
      auto [module, name] = split_key(key);
      deltas[module][name] = a;
    }
    const Tree tree = as_tree(canonical_tree(spec));
    const auto used = used_nodes(tree);
    WeightSet out;
    for (size_t l = 0; l < used.size(); ++l) {
      for (size_t i = 0; i < used[l].size(); ++i) {
        if (!used[l][i]) continue;
        const std::string key = "n" + std::to_string(l) + "_" + std::to_string(i);
        auto d = deltas.find(key);
        fold_module(key, "nodes." + key + ".", d == deltas.end() ? nullptr : &d->second, out);
      }
    }
    for (size_t j = 0; modules_.count("heads." + std::to_string(j)); ++j) {
      fold_module("heads." + std::to_string(j), "heads." + std::to_string(j) + ".", nullptr, out);
    }
    return out;
  }

 private:
  void fold_module(const std::string& module, const std::string& prefix, const Arrays* deltas, WeightSet& out) const {
    auto it = modules_.find(module);
    if (it == modules_.end()) throw Error("the anchor lacks " + module + " for this tree");
    fold_params(it->second.arrays, it->second.pairs, deltas, prefix, out, "the anchor's " + module + " ");
  }

  std::map<std::string, Module> modules_;
};

// -- slim-width ----------------------------------------------------------------------------

Array prefix_slice(const Array& full, int64_t row, const std::vector<int64_t>& shape, const std::string& name) {
  std::vector<int64_t> src_shape = full.shape;
  size_t base = 0;
  if (row >= 0) {
    if (src_shape.empty() || row >= src_shape[0]) throw Error(name + ": BN row " + std::to_string(row) + " is out of range");
    base = static_cast<size_t>(row) * (full.numel() / static_cast<size_t>(src_shape[0]));
    src_shape.erase(src_shape.begin());
  }
  if (shape.size() != src_shape.size()) throw Error(name + ": cannot slice a " + std::to_string(shape.size()) + "-d prefix");
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0 || shape[d] > src_shape[d]) throw Error(name + ": cannot slice beyond the anchor's array");
  }
  Array out{full.dtype, shape, {}};
  const size_t item = full.data.size() / std::max<size_t>(full.numel(), 1);
  out.data.resize(out.numel() * item);
  std::vector<size_t> stride(src_shape.size() + 1, 1);
  for (size_t d = src_shape.size(); d-- > 0;) stride[d] = stride[d + 1] * static_cast<size_t>(src_shape[d]);
  std::vector<int64_t> idx(shape.size(), 0);
  for (size_t n = 0; n < out.numel(); ++n) {
    size_t off = base;
    for (size_t d = 0; d < shape.size(); ++d) off += static_cast<size_t>(idx[d]) * stride[d + 1];
    std::copy_n(full.data.begin() + static_cast<std::ptrdiff_t>(off * item), item, out.data.begin() + static_cast<std::ptrdiff_t>(n * item));
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

class SlimAnchor : public Anchor {
 public:
  SlimAnchor(Arrays arrays, const json& plan) : arrays_(std::move(arrays)) {
    if (!plan.is_object() || !plan.contains("units") || !plan["units"].is_object()) {
      throw Error("a slim-width anchor plan is {'widths': [...], 'units': {unit: {...}}}");
    }
    units_ = plan["units"];
  }

  WeightSet weights(const json& spec, const Arrays&) const override {
    const json w = canonical_widths(spec);
    std::vector<std::string> units = {"enc/" + std::to_string(w[0].get<int>())};
    for (size_t i = 1; i < w.size(); ++i) {
      units.push_back("dec" + std::to_string(i - 1) + "/" + std::to_string(w[0].get<int>()) + "/" +
                      std::to_string(w[i].get<int>()));
    }
    WeightSet out;
    for (const auto& unit : units) fold_unit(unit, spec, out);
    return out;
  }

 private:
  void fold_unit(const std::string& unit, const json& spec, WeightSet& out) const {
    if (!units_.contains(unit)) throw Error("the anchor has no unit '" + unit + "' (widths " + spec.dump() + " were not trained)");
    const json& u = units_[unit];
    if (!u.is_object() || !u.value("prefix", json()).is_string() || !u.value("params", json()).is_object()) {
      throw Error("anchor unit " + unit + " is malformed");
    }
    Arrays params;
    for (const auto& [name, src] : u["params"].items()) {
      if (!src.is_array() || src.size() != 3 || !src[0].is_string() || !src[2].is_array()) {
        throw Error(name + ": a slice is [source, row, shape], found " + repr(src));
      }
      auto it = arrays_.find(src[0].get<std::string>());
      if (it == arrays_.end()) throw Error(name + ": the anchor has no array " + repr(src[0]));
      const int64_t row = src[1].is_null() ? -1 : src[1].get<int64_t>();
      params[name] = prefix_slice(it->second, row, src[2].get<std::vector<int64_t>>(), name);
    }
    fold_params(params, parse_pairs(u.value("pairs", json::array()), unit), nullptr, u["prefix"].get<std::string>(), out,
                "unit " + unit + " ");
  }

  Arrays arrays_;
  json units_;
};

std::unique_ptr<Anchor> tree_anchor(Arrays arrays, const json& plan) { return std::make_unique<TreeAnchor>(std::move(arrays), plan); }
std::unique_ptr<Anchor> slim_anchor(Arrays arrays, const json& plan) { return std::make_unique<SlimAnchor>(std::move(arrays), plan); }

}  // namespace

json canonical_tree(const json& parents) {
  const Tree tree = as_tree(parents);
  const auto used = used_nodes(tree);
  json out = json::array();
  for (size_t layer = 0; layer < tree.size(); ++layer) {
    json row = json::array();
    for (size_t child = 0; child < tree[layer].size(); ++child) {
      const int p = tree[layer][child];
      if (used[layer + 1][child] && p < 0) {
        throw Error("tree layer " + std::to_string(layer) + ": used child " + std::to_string(child) + " has no parent (-1)");
      }
      row.push_back(used[layer + 1][child] ? p : -1);
    }
    out.push_back(row);
  }
  return out;
}

std::string tree_signature(const json& parents) { return sha256_hex(tree_text(canonical_tree(parents))).substr(0, 16); }

json canonical_widths(const json& spec) {
  if (!spec.is_array() || spec.size() < 3) {
    throw Error("a width configuration is [encoder %, decoder % per task (>= 2)], found " + repr(spec));
  }
  for (const auto& w : spec) {
    if (!w.is_number_integer() || w.get<long long>() <= 0 || w.get<long long>() > 100) {
      throw Error("widths are integer percentages in 1..100, found " + spec.dump());
    }
  }
  return spec;
}

std::string widths_signature(const json& spec) {
  std::string text = "slim:";
  const json w = canonical_widths(spec);
  for (size_t i = 0; i < w.size(); ++i) text += (i ? "," : "") + std::to_string(w[i].get<int>());
  return sha256_hex(text).substr(0, 16);
}

const Family& get_family(const std::string& name) {
  static const std::map<std::string, Family> families = {
      {"dymu-tree", {"dymu-tree", canonical_tree, tree_signature, tree_anchor}},
      {"slim-width", {"slim-width", canonical_widths, widths_signature, slim_anchor}},
  };
  auto it = families.find(name);
  if (it == families.end()) throw Error("unknown model family '" + name + "'; expected one of ['dymu-tree', 'slim-width']");
  return it->second;
}

}  // namespace edgemtl

#include "edgemtl/arrays.hpp"

#include <openssl/evp.h>

#include <fstream>
#include <iterator>
#include <limits>

namespace edgemtl {

namespace {

constexpr uint64_t kMaxHeader = 100 << 20;  // safetensors' own limit on the JSON header

struct DType {
  size_t size;
  const char* numpy;  // numpy's dtype.str: part of the content hash
};

const std::map<std::string, DType>& dtypes() {
  static const std::map<std::string, DType> table = {
      {"F64", {8, "<f8"}}, {"F32", {4, "<f4"}}, {"F16", {2, "<f2"}}, {"I64", {8, "<i8"}}, {"I32", {4, "<i4"}},
      {"I16", {2, "<i2"}}, {"I8", {1, "|i1"}},  {"U8", {1, "|u1"}},  {"BOOL", {1, "|b1"}},
  };
  return table;
}

Error corrupt(const fs::path& path, const std::string& why) {
  return Error("array file " + path.string() + " is corrupt or not a safetensors file (" + why + ")");
}

Array parse_entry(const fs::path& path, const std::string& name, const json& meta, const std::vector<uint8_t>& data,
                  size_t start) {
  if (!meta.is_object() || !meta.contains("dtype") || !meta.contains("shape") || !meta.contains("data_offsets")) {
    throw corrupt(path, "entry " + name + " lacks dtype, shape or data_offsets");
  }
  const auto& dt = meta["dtype"];
  if (!dt.is_string() || !dtypes().count(dt.get<std::string>())) throw corrupt(path, "unknown dtype of " + name);
  Array a{dt.get<std::string>(), {}, {}};
  constexpr uint64_t kMaxElements = uint64_t(1) << 40;
  if (!meta["shape"].is_array()) throw corrupt(path, "shape of " + name + " is not a list");
  uint64_t count = 1;
  for (const auto& d : meta["shape"]) {
    if (!d.is_number_unsigned()) throw corrupt(path, "bad shape of " + name);
    const uint64_t n = d.get<uint64_t>();
    if (n != 0 && count > kMaxElements / n) throw corrupt(path, "shape of " + name + " is too large");  // no wrap-around
    a.shape.push_back(static_cast<int64_t>(n));
    count *= n;
  }
  const auto& off = meta["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
    throw corrupt(path, "bad data_offsets of " + name);
  }
  const uint64_t begin = off[0], end = off[1];
  if (begin > end || end > data.size() - start || end - begin != count * dtypes().at(a.dtype).size) {
    throw corrupt(path, "data of " + name + " lies outside the file or does not match its shape");
  }
  a.data.assign(data.begin() + start + begin, data.begin() + start + end);
  return a;
}

}  // namespace

size_t Array::numel() const { return edgemtl::numel(shape); }

void require_f32(const Arrays& arrays, const std::string& what) {
  for (const auto& [name, a] : arrays) {
    if (a.dtype != "F32") throw Error("bundle " + what + " array '" + name + "': expected float32, found " + a.dtype);
  }
}

const float* Array::f32(const std::string& who) const {
  if (dtype != "F32") throw Error(who + ": expected a float32 array, found " + dtype);
  return reinterpret_cast<const float*>(data.data());
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr); }
Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }
void Sha256::update(const void* data, size_t n) { EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, n); }

std::string Sha256::hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &n);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out += digits[digest[i] >> 4];
    out += digits[digest[i] & 15];
  }
  return out;
}

std::string sha256_hex(const std::string& text) {
  Sha256 h;
  h.update(text);
  return h.hex();
}

std::string file_sha256(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot read " + path.string());
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (f.read(buf.data(), static_cast<std::streamsize>(buf.size())) || f.gcount() > 0) {
    h.update(buf.data(), static_cast<size_t>(f.gcount()));
  }
  return h.hex();
}

std::string arrays_id(const Arrays& arrays, size_t length) {
  Sha256 h;
  for (const auto& [name, a] : arrays) {
    h.update(name + ":" + dtypes().at(a.dtype).numpy + ":" + shape_repr(a.shape) + ";");
    h.update(a.data.data(), a.data.size());
  }
  return h.hex().substr(0, length);
}

Arrays load_arrays(const fs::path& path, bool verify) {
  if (!fs::is_regular_file(path)) {
    throw Error("array file " + path.string() + " is missing: the bundle is incomplete, rebuild it");
  }
  std::ifstream f(path, std::ios::binary);
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (data.size() < 8) throw corrupt(path, "shorter than its header");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[static_cast<size_t>(i)];
  if (n > kMaxHeader || n > data.size() - 8) throw corrupt(path, "header length beyond the file");
  json header;
  const char* text = reinterpret_cast<const char*>(data.data()) + 8;
  if (const std::string why = parse_json(text, text + n, header); !why.empty()) throw corrupt(path, "header is " + why);
  if (!header.is_object()) throw corrupt(path, "header is not a JSON object");
  Arrays arrays;
  for (const auto& [name, meta] : header.items()) {
    if (name != "__metadata__") arrays.emplace(name, parse_entry(path, name, meta, data, 8 + n));
  }
  if (verify) {
    const std::string id = arrays_id(arrays);
    if (id != path.stem().string()) {
      throw Error("array file " + path.string() + " is corrupt: its content hashes to " + id + ", expected " +
                  path.stem().string());
    }
  }
  return arrays;
}

}  // namespace edgemtl

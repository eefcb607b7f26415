// The bundles ctest's fixture_bundles step builds (make_bundles.py), and small helpers.
#pragma once

#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "edgemtl/common.hpp"

namespace edgemtl::test {

inline fs::path fixture() {
  const char* dir = std::getenv("EDGEMTL_FIXTURE");
  if (dir == nullptr) throw Error("EDGEMTL_FIXTURE is not set: run the tests through ctest");
  return dir;
}

inline json read_json(const fs::path& path) {
  std::ifstream f(path);
  return json::parse(f);
}

// A fresh folder under the build tree, removed first.
inline fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("edgemtl-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Runs `body`, expecting an Error whose message contains `needle`.
template <class F>
void expect_error(F&& body, const std::string& needle) {
  try {
    body();
    ADD_FAILURE() << "expected an error containing '" << needle << "', nothing was thrown";
  } catch (const Error& exc) {
    EXPECT_NE(std::string(exc.what()).find(needle), std::string::npos) << "message: " << exc.what();
  }
}

}  // namespace edgemtl::test

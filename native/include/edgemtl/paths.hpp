// Where every path and id read from an untrusted file is checked (edgecore/paths.py).
//
// Bundles are copied between machines and edited by hand: ids must match a strict
// pattern; paths must be relative, without "..", and stay inside their root once
// symlinks are resolved. Anything else is one Error naming the field and the value.
#pragma once

#include "edgemtl/common.hpp"

namespace edgemtl {

// `value` if it is a string matching the pattern of `kind` (hex16, hex24, sha256, name) in full.
const std::string& check_id(const json& value, const std::string& kind, const std::string& where);

// `value` if it is a relative POSIX path without "..", "." or empty parts.
const std::string& check_relative(const json& value, const std::string& where);

// root/rel, resolved, after checking it stays inside root once symlinks are followed.
fs::path confine(const fs::path& root, const std::string& rel, const std::string& where);

// Lower-case path component: runs of anything but [A-Za-z0-9_.-] become '-' (device_slug).
std::string slug(const std::string& text);

}  // namespace edgemtl

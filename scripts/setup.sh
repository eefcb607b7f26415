#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project with its training, compiler and test
# extras, pinned by constraints.txt; installs the native runtime's build dependencies
# (Debian/Ubuntu packages) when missing. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e ".[train,compile,openvino,video,bench,test,dev]"

# The native runtime (CMakeLists.txt): compilers and CMake, JSON, sha256 (OpenSSL),
# GoogleTest, and OpenCV's video/image components for edgemtl-run. OpenVINO comes from
# the openvino wheel above. EDGEMTL_SKIP_APT=1 skips this (a machine set up by hand).
NATIVE_PKGS="cmake ninja-build g++ nlohmann-json3-dev libssl-dev libgtest-dev
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev"
missing=""
for pkg in $NATIVE_PKGS; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ] && [ "${EDGEMTL_SKIP_APT:-0}" != 1 ]; then
    if ! command -v apt-get >/dev/null; then
        echo "setup: the native runtime needs:$missing (no apt-get here: install them by hand)" >&2
    else
        SUDO=""
        [ "$(id -u)" = 0 ] || SUDO="sudo"
        echo "setup: installing the native runtime's build dependencies:$missing"
        $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
            { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
    fi
fi

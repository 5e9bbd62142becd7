#!/usr/bin/env bash
# Build llama-cpp-python's wheel once and keep it in a cache outside the checkout, so neither
# `make up`, `make test` nor a fresh clone compiles llama.cpp again (it takes minutes).
set -euo pipefail
python="${1:?usage: ensure-llama-wheel.sh PYTHON WHEEL_DIR VERSION}"
wheel_dir="${2:?}"
version="${3:?}"
mkdir -p "$wheel_dir"
if compgen -G "$wheel_dir/llama_cpp_python-$version-*.whl" >/dev/null; then
  exit 0
fi
echo "Building llama-cpp-python $version once (compiles llama.cpp; a few minutes)..." >&2
# A portable build: GGML_NATIVE would compile in whatever the build machine's CPU reports, and
# some virtual machines report AMX tiles they do not let a process use (the model server then
# dies with a general-protection fault on its first request). AVX2/FMA/F16C stay on.
CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  "$python" -m pip wheel -q --no-deps --no-cache-dir "llama-cpp-python==$version" -w "$wheel_dir"

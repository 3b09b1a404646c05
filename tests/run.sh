#!/usr/bin/env bash
# Installs what is missing (Debian bookworm, as root), then builds and runs every test three times:
# an optimised build (tests, benchmarks and examples built; the tests run), an
# address + undefined sanitizer build of the tests and examples, and an optimised build of the
# tests with Eigen's BLAS backend on OpenBLAS. Then installs the package
# into a fresh prefix and builds and runs tests/consumer against it, and fuzzes each file
# reader for UNFOLD_FUZZ_SECONDS (default 60) seconds with libFuzzer.
#   tests/run.sh [BUILD_ROOT]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build-tests"}
jobs=${UNFOLD_JOBS:-2}

missing=()
for pkg in cmake g++ make libeigen3-dev catch2 libbenchmark-dev libcli11-dev nlohmann-json3-dev libopenblas-dev clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== optimised build: $build/release"
cmake -S "$root" -B "$build/release" -DCMAKE_BUILD_TYPE=Release -DUNFOLD_BUILD_TESTS=ON \
  -DUNFOLD_BUILD_BENCHMARKS=ON -DUNFOLD_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build/release" -j"$jobs"
ctest --test-dir "$build/release" --output-on-failure -j"$jobs"

# Eigen's own assertions stay on here (no NDEBUG), beside the sanitizers.
echo "== sanitizer build (address, undefined): $build/sanitize"
cmake -S "$root" -B "$build/sanitize" -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" \
  -DUNFOLD_SANITIZE=ON -DUNFOLD_BUILD_TESTS=ON -DUNFOLD_BUILD_BENCHMARKS=OFF \
  -DUNFOLD_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build/sanitize" -j"$jobs"
ctest --test-dir "$build/sanitize" --output-on-failure -j"$jobs"

# Eigen's products through OpenBLAS (UNFOLD_USE_BLAS): the same tests must pass. OpenBLAS
# 0.3.21 does not know recent Xeons and falls back to its Prescott kernels, whose ssymv reads
# past the end of its vector (valgrind shows it in the float eigensolver of spectral_clamp);
# the kernels for the CPU's real instruction set are chosen from its flags.
coretype=${OPENBLAS_CORETYPE:-}
if [ -z "$coretype" ]; then
  if grep -qw avx512f /proc/cpuinfo; then coretype=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then coretype=Haswell
  fi
fi
echo "== BLAS build (EIGEN_USE_BLAS, OpenBLAS, core type ${coretype:-auto}): $build/blas"
cmake -S "$root" -B "$build/blas" -DCMAKE_BUILD_TYPE=Release -DUNFOLD_USE_BLAS=ON \
  -DUNFOLD_BUILD_TESTS=ON -DUNFOLD_BUILD_BENCHMARKS=OFF -DUNFOLD_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build/blas" -j"$jobs"
OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=$coretype \
  ctest --test-dir "$build/blas" --output-on-failure -j"$jobs"

# The package as a user gets it: installed, found with find_package, linked as unfold::unfold.
echo "== package: install to $build/package/prefix, build and run tests/consumer against it"
rm -rf "$build/package"
cmake --install "$build/release" --prefix "$build/package/prefix" >/dev/null
cmake -S "$root/tests/consumer" -B "$build/package/consumer" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$build/package/prefix" -DUNFOLD_CONSUMER_PREFIX="$build/package/prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >/dev/null
cmake --build "$build/package/consumer" -j"$jobs"
"$build/package/consumer/unfold_consumer"

echo "== fuzz: each file reader for ${UNFOLD_FUZZ_SECONDS:-60} s: $build/fuzz"
UNFOLD_FUZZ_BUILD="$build/fuzz" bash "$root/tests/fuzz/run.sh" "${UNFOLD_FUZZ_SECONDS:-60}"

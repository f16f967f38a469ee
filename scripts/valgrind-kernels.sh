#!/usr/bin/env bash
# Memory-checks the unsafe SIMD kernels: builds the engine's unit tests for
# x86-64-v3 (AVX2, FMA, F16C; valgrind cannot run AVX-512) in a separate
# target folder and runs the quantized-kernel tests under valgrind memcheck,
# which then exercises the AVX2 register tiles against the scalar reference.
# Miri cannot run them: it lacks the F16C and AVX2 conversion intrinsics.
# Not part of the test suite (the build takes ~20 minutes on 2 cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
export CARGO_TARGET_DIR="$cache/valgrind-target"
export RUSTFLAGS="-C target-cpu=x86-64-v3"
bin=$(cargo test --locked -p switchyard-engine --lib --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "switchyard_engine":
        print(m["executable"])' | tail -1)
cd crates/engine
valgrind --error-exitcode=3 "$bin" quant:: --test-threads 1 --nocapture

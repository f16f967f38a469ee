#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust tests on the real models, and
# the end-to-end test with the official OpenAI Python SDK against the binary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"

./scripts/fetch-models.sh

echo "== fmt and clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== services"
# The storage tests run on SQLite and on a real PostgreSQL (SWITCHYARD_TEST_POSTGRES,
# default postgres://postgres@127.0.0.1:5432/test); start a local one that stopped.
if [ -z "${SWITCHYARD_TEST_POSTGRES:-}" ] && command -v pg_isready >/dev/null \
  && ! pg_isready -q -h 127.0.0.1 -p 5432 && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
# The shared rate limiter's tests use a real Redis (SWITCHYARD_TEST_REDIS,
# default redis://127.0.0.1:6379); start a local one that stopped.
if [ -z "${SWITCHYARD_TEST_REDIS:-}" ] && command -v redis-server >/dev/null \
  && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi

echo "== rust tests"
# The model-store tests pull from a real S3-compatible server (moto) on 127.0.0.1.
moto="$cache/venv-moto"
if [ ! -x "$moto/bin/moto_server" ]; then
  python3 -m venv "$moto"
  "$moto/bin/pip" install --quiet --disable-pip-version-check -r tests/store/requirements.txt
fi
export MOTO_SERVER="$moto/bin/moto_server"
cargo test --workspace --locked

echo "== end-to-end with the openai SDK"
venv="$cache/venv-e2e"
if [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
fi
cargo build --locked -p switchyard
SWITCHYARD_BIN="$CARGO_TARGET_DIR/debug/switchyard" "$venv/bin/pytest" -q tests/e2e

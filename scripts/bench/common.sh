# Shared set-up of the benchmark scripts; sourced, not run.
# After it: the working directory is the repository root ($root), cargo
# builds into $CARGO_TARGET_DIR, the default models are fetched and the
# release binary is built at $sy.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
cache="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
./scripts/fetch-models.sh >/dev/null
cargo build --release --locked -p switchyard >/dev/null
sy="$CARGO_TARGET_DIR/release/switchyard"
smollm="models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The llama.cpp binaries: the folder given, or the anchor built on first use.
llama_cpp_bin() { if [ -n "${1:-}" ]; then echo "$1"; else ./scripts/bench/install-llama-cpp.sh | tail -1; fi; }

# start_server READY_PATH -- command...: runs the command with `--port` on a
# free port, sets $pid and $port, and waits until READY_PATH answers.
start_server() {
  local ready="$1"; shift 2
  port=$(free_port)
  "$@" --port "$port" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port$ready" >/dev/null 2>&1 && break; sleep 0.2; done
}

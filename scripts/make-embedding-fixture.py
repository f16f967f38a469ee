#!/usr/bin/env python3
"""Produce tests/fixtures/minilm_embeddings.json: sentence-transformers'
embeddings of all-MiniLM-L6-v2 for a set of awkward texts, the reference that
crates/engine/tests/embeddings.rs compares the engine with (cosine >= 0.9999,
identical token ids).

Run once, offline, from the fetched model folder (scripts/fetch-models.sh):
    python3 -m venv ~/.cache/switchyard/venv-st
    ~/.cache/switchyard/venv-st/bin/pip install torch sentence-transformers
    HF_HUB_OFFLINE=1 ~/.cache/switchyard/venv-st/bin/python scripts/make-embedding-fixture.py

Each text is encoded alone (batch size 1), so the reference carries no
padding effects of its own. The vectors are whatever the folder's module
pipeline produces (Transformer, mean Pooling, Normalize for MiniLM), rounded
to 7 significant digits. The token ids are sentence-transformers' own
tokenization, after its truncation at max_seq_length.
"""
import json, os, platform, sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sentence_transformers, tokenizers, torch, transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models/all-minilm-l6-v2")
OUT = os.path.join(ROOT, "tests/fixtures/minilm_embeddings.json")

LONG_ENGLISH = " ".join(
    [
        "The river rose slowly through the night, and by morning the lower fields were under water.",
        "Farmers who had lived there for generations said they had never seen anything like it,",
        "though the old records kept at the parish church told of a similar flood in 1783.",
        "Engineers arrived before noon with sandbags, pumps and a plan to divert the current",
        "through a disused canal that ran along the eastern edge of the valley.",
    ]
    * 4
)
LONG_CODE = "\n".join(
    f"def handler_{i}(request, *, timeout={i * 10}):\n"
    f"    \"\"\"Handle request number {i}.\"\"\"\n"
    f"    if request.get('id') is None:\n"
    f"        raise ValueError(f'missing id in {{request!r}}')\n"
    f"    return {{'status': 200, 'body': request['payload'][:{i + 16}]}}\n"
    for i in range(12)
)
LONG_GERMAN = (
    "Die Donaudampfschifffahrtsgesellschaft veröffentlichte gestern ihren Jahresbericht. "
    "Darin heißt es, dass die Passagierzahlen gegenüber dem Vorjahr um zwölf Prozent gestiegen sind, "
    "während die Frachtmengen aufgrund niedriger Wasserstände zurückgingen. "
) * 6
LONG_CJK = "机器学习是人工智能的一个分支，它使计算机能够在没有明确编程的情况下从数据中学习。" * 8

TEXTS = [
    # short
    "Hello, world!",
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "",
    "a",
    # accents and Latin-script languages
    "Crème brûlée, jalapeño, naïve café, Ångström, Øresund, Łódź.",
    "¿Dónde está la biblioteca? Está cerca de la estación.",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Ich möchte ein Glas Wasser, bitte. Grüße aus Köln!",
    "Bugün hava çok güzel, değil mi? Şişli'de buluşalım.",
    # other scripts
    "東京は日本の首都です。",
    "我喜欢在周末读书和喝茶。",
    "서울은 대한민국의 수도입니다.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "Привет, как дела? Всё хорошо, спасибо.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "नमस्ते, आप कैसे हैं?",
    # emoji and symbols
    "I love pizza 🍕🍕 and rockets 🚀! 👩‍👩‍👧‍👦 #family",
    "∑(x²) ≥ 0 for all x ∈ ℝ; ½ + ¼ = ¾ — “quoted” ‘text’ …",
    # source code
    "fn main() { println!(\"{}\", (1..=10).map(|x| x * x).sum::<u32>()); }",
    "SELECT name, COUNT(*) FROM users WHERE created_at > '2024-01-01' GROUP BY name;",
    # whitespace oddities
    "   leading and trailing spaces   ",
    "tabs\tand\nnew\r\nlines\n\n\nhere",
    "non\u00a0breaking\u2003em\u3000ideographic and zero\u200bwidth",
    "   ",
    # long: past 256 wordpieces, so truncation decides the vector
    LONG_ENGLISH,
    LONG_CODE,
    LONG_GERMAN,
    LONG_CJK,
]


def round7(x):
    return float(f"{x:.7g}")


def main():
    torch.set_num_threads(1)
    model = SentenceTransformer(MODEL_DIR, device="cpu")
    model.eval()
    modules = [type(m).__name__ for m in model]
    normalized = "Normalize" in modules
    cases = []
    for text in TEXTS:
        # preprocess() is the sentence-transformers 6 name of tokenize().
        features = getattr(model, "preprocess", None) or model.tokenize
        features = features([text])
        ids = features["input_ids"][0][features["attention_mask"][0].bool()].tolist()
        vec = model.encode([text], batch_size=1, convert_to_numpy=True)[0]
        cases.append(
            {
                "text": text,
                "tokens": len(ids),
                "token_ids": ids,
                "embedding": [round7(float(v)) for v in vec],
            }
        )
        print(f"{len(ids):4d} tokens  {text[:50]!r}", file=sys.stderr)
    fixture = {
        "model": "all-minilm-l6-v2",
        "generator": "scripts/make-embedding-fixture.py",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "modules": modules,
        "normalized": normalized,
        "max_seq_length": model.max_seq_length,
        "dims": len(cases[0]["embedding"]),
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    # One line per case keeps the file small and its diffs readable.
    head = json.dumps({k: v for k, v in fixture.items() if k != "cases"}, ensure_ascii=False, indent=1)
    lines = ",\n".join("  " + json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(head[:-2] + ',\n "cases": [\n' + lines + "\n ]\n}\n")
    print(f"wrote {OUT}: {len(cases)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()

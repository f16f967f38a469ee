#!/usr/bin/env python3
"""Write the mixed-length embedding benchmark corpus: one JSON string per line.

Deterministic (fixed seed, words from the list below), so every tool in one
run and every run on any machine embeds the same texts. Lengths follow a
mixture that looks like retrieval traffic: 70% short (4-30 words), 25%
medium (30-120) and 5% long (120-299, past MiniLM's 256-token limit).
    scripts/bench/make-corpus.py OUT [COUNT]
"""
import json, random, sys

WORDS = """
the of and to in is was for on that with as by at from it this be are an or
have has had not but which were their they one all been would there more when
will can its also after first other into new time two over some only most
city model data system search query engine result vector server request token
batch answer question document river mountain village market music language
history science energy water paper light network memory cache latency user
people world year years state school family group company government house
night story water point place week case member power area money game program
problem service fact number level order book word business issue side kind head
quickly slowly carefully often never always sometimes together almost nearly
build run read write find keep give take make show learn change follow stop
open close begin start turn move live believe bring happen provide sit stand
lose pay meet include continue set learn lead understand watch speak grow
offer remember love consider appear buy wait serve die send expect stay fall
cut reach kill remain suggest raise pass sell require report decide pull
café naïve résumé Zürich São Paulo München 東京 北京 Москва 😀 🚀 #include
fn() {} [x] <div> SELECT * FROM users WHERE id = 42; 3.14159 2026-11-25 $19.99
""".split()


def main() -> None:
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rng = random.Random(20261125)
    with open(out, "w", encoding="utf-8") as f:
        for _ in range(count):
            u = rng.random()
            if u < 0.70:
                n = rng.randint(4, 30)
            elif u < 0.95:
                n = rng.randint(30, 120)
            else:
                n = rng.randint(120, 299)
            words = [rng.choice(WORDS) for _ in range(n)]
            words[0] = words[0].capitalize()
            f.write(json.dumps(" ".join(words) + ".", ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

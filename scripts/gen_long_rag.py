#!/usr/bin/env python3
"""Generate prompts/long-rag.jsonl: long-context, RAG-like prompts (deterministic, seeded).

Each prompt is a user question followed by 6-10 retrieved documents drawn from the document
banks of gen_prompts.py (one of them holds the answer), about 1,200-2,500 words in all, so
prefill dominates: the workload for context-length and batch-size settings. The question comes
first and the document order is shuffled per prompt, so no two prompts share a long prefix and a
prompt cache cannot flatter a trial by accident.

Usage: gen_long_rag.py [--out DIR] [--count N] [--check]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_prompts import BANKS, MAX_SHARED_PREFIX  # noqa: E402

SEED = 20261128


def build(count: int) -> list[dict]:
    rng = random.Random(SEED)
    questions = [(b, q, idx) for b in BANKS for (q, idx) in b["questions"]]
    rng.shuffle(questions)
    out = []
    for i in range(count):
        bank, question, answer_idx = questions[i % len(questions)]
        others = [b for b in BANKS if b is not bank]
        docs = [bank] + rng.sample(others, rng.randint(5, 9))
        rng.shuffle(docs)
        parts = []
        for n, doc in enumerate(docs, 1):
            sentences = list(doc["sentences"])
            if doc is not bank:
                rng.shuffle(sentences)
            parts.append(f"[Doc {n}: {doc['title']}]\n" + " ".join(sentences))
        prompt = (
            f"Question {i + 1}: {question}\n\n"
            "Answer using only the documents below, and name the document you used.\n\n"
            + "\n\n".join(parts)
        )
        out.append({"id": f"rag-long-{i + 1:04d}", "prompt": prompt})
    prefixes = {}
    for p in out:
        key = p["prompt"][:MAX_SHARED_PREFIX]
        assert key not in prefixes, f"shared prefix: {p['id']} and {prefixes[key]}"
        prefixes[key] = p["id"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "prompts"))
    ap.add_argument("--count", type=int, default=96)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in build(args.count))
    path = Path(args.out) / "long-rag.jsonl"
    if args.check:
        if path.read_text() != text:
            print(f"{path} differs from the generator's output", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    words = [len(json.loads(line)["prompt"].split()) for line in text.splitlines()]
    print(f"wrote {path}: {len(words)} prompts, {min(words)}-{max(words)} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write prompts/sample-trace.jsonl: a small Mooncake-form trace (timestamp ms, input_length,
output_length, hash_ids with 512-token blocks) for `infertune trace stats` and
`[workload] trace = ...`. Standard library only, seeded: the file is the same on every run.

What it holds, on purpose:
- bursty arrivals: calm stretches at about 1 request/s broken by bursts at about 8/s;
- a shared system prompt (block id 1, 512 tokens) on 85 % of requests, so a prompt cache pays;
- chat turns: a quarter of the requests continue an earlier conversation, sharing all of its
  blocks (the longer shared prefixes of chat history);
- a long-tail ISL: the user part is log-normal (median about 150 tokens, capped at 3000).

Usage: scripts/gen_trace.py [OUT] [--requests N]
"""

import json
import math
import random
import sys

BLOCK = 512
SYSTEM_ID = 1


def arrivals(rng, n):
    """Arrival times in ms: phases of calm (1/s, 8-15 s long) and bursts (8/s, 2-4 s long)."""
    t, out, burst = 0.0, [], False
    phase_end = rng.uniform(8, 15)
    while len(out) < n:
        rate = 8.0 if burst else 1.0
        t += rng.expovariate(rate)
        if t > phase_end:
            burst = not burst
            phase_end = t + (rng.uniform(2, 4) if burst else rng.uniform(8, 15))
        out.append(int(t * 1000))
    return out


def main():
    args = sys.argv[1:]
    n = 200
    if "--requests" in args:
        i = args.index("--requests")
        n = int(args[i + 1])
        del args[i : i + 2]
    out = args[0] if args else "prompts/sample-trace.jsonl"
    rng = random.Random(17)
    next_id = SYSTEM_ID + 1
    conversations = []  # hash_ids and input_length of earlier requests, to continue
    rows = []
    for ts in arrivals(rng, n):
        user = min(3000, max(8, int(rng.lognormvariate(math.log(150), 1.0))))
        output = min(400, max(4, int(rng.lognormvariate(math.log(60), 0.8))))
        if conversations and rng.random() < 0.25:
            # the next turn: the whole earlier prompt (and, in production, its answer) again
            ids, prefix = rng.choice(conversations)
            prefix_len = len(ids) * BLOCK  # continue from a block boundary
            ids = list(ids)
        elif rng.random() < 0.85:
            ids, prefix_len = [SYSTEM_ID], BLOCK
        else:
            ids, prefix_len = [], 0
        length = prefix_len + user
        while len(ids) * BLOCK < length:
            ids.append(next_id)
            next_id += 1
        rows.append({"timestamp": ts, "input_length": length, "output_length": output, "hash_ids": ids})
        # only whole blocks can be shared: keep the full ones as the conversation so far
        full = ids[: length // BLOCK]
        if full:
            conversations.append((full, length))
    with open(out, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} requests over {rows[-1]['timestamp'] / 1000:.1f} s to {out}")


if __name__ == "__main__":
    main()

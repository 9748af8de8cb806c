#!/usr/bin/env python3
"""Write a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) for SmolLM2 from the
GGUF file's own vocabulary and merges, so AIPerf (scripts/bench-client) runs without reaching
Hugging Face. transformers' GGUF loader would need torch; the `gguf` reader and `tokenizers` do not.

Usage: smollm2_tokenizer.py OUT_DIR [GGUF]
"""
import json, os, sys
from gguf import GGUFReader
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
out = sys.argv[1]
r = GGUFReader(sys.argv[2] if len(sys.argv) > 2 else "models/SmolLM2-135M-Instruct-Q8_0.gguf")
def strings(name):
    f = r.fields[name]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
def scalar(name):
    f = r.fields[name]
    return int(f.parts[f.data[0]][0])
tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split(" ", 1)) for m in merges]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
os.makedirs(out, exist_ok=True)
tok.save(os.path.join(out, "tokenizer.json"))
bos, eos = tokens[scalar("tokenizer.ggml.bos_token_id")], tokens[scalar("tokenizer.ggml.eos_token_id")]
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos, "model_max_length": 8192},
          open(os.path.join(out, "tokenizer_config.json"), "w"))
print(f"{out}: {len(tokens)} tokens, {len(merges)} merges", file=sys.stderr)

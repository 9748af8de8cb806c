#!/usr/bin/env python3
"""Derive Q4_0 / Q8_0 / F16 variants of a GGUF model with PyPI `gguf`.

Each 2-D (or higher) tensor is dequantized to float32 with `gguf.quants.dequantize`
and then re-encoded: `gguf.quants.quantize` for Q8_0 / Q4_0, a cast for F16.
1-D tensors (norms, biases) stay F32. Every metadata KV field is copied; only
`general.file_type` is set to the variant's real file type so llama.cpp reports
the right quantization.

Policy for the token embedding (tied with the output head in SmolLM2): the shipped
Q4_1 file stores it as Q8_0, like llama-quantize keeps the output tensor at higher
precision. The Q4_0 variant keeps that policy (Q8_0), so Q4_0 vs Q4_1 differs only
in the transformer-block weights. Q8_0 and F16 convert it like every other tensor.

Output is written to `<name>.tmp-<pid>` and renamed when complete, so an
interrupted run never leaves a half-written model behind.

Usage: derive_variants.py SRC.gguf OUT_DIR [--prefix NAME] [--variants Q4_0,Q8_0,F16] [--force]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import LlamaFileType as FT

VARIANTS = {
    # name: (target type for block weights, target type for token_embd, file_type)
    "Q4_0": (QT.Q4_0, QT.Q8_0, FT.MOSTLY_Q4_0),
    "Q8_0": (QT.Q8_0, QT.Q8_0, FT.MOSTLY_Q8_0),
    "F16": (QT.F16, QT.F16, FT.MOSTLY_F16),
}


def convert(src: Path, dst: Path, variant: str) -> None:
    block_type, embd_type, ftype = VARIANTS[variant]
    reader = gguf.GGUFReader(src, "r")
    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if arch_field is None:
        raise SystemExit(f"{src}: no general.architecture")
    arch = arch_field.contents()

    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        for field in reader.fields.values():
            # Virtual fields and general.architecture are written by GGUFWriter itself.
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue
            if field.name == gguf.Keys.General.FILE_TYPE:
                writer.add_file_type(int(ftype))
                continue
            val_type = field.types[0]
            sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)

        for t in reader.tensors:
            if len(t.shape) < 2:
                # 1-D tensors (norms): keep as F32.
                data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
                writer.add_tensor(t.name, np.ascontiguousarray(data), raw_dtype=QT.F32)
                continue
            target = embd_type if t.name == "token_embd.weight" else block_type
            if t.tensor_type == target:
                # Already in the target type: copy the bytes as they are.
                writer.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=target)
                continue
            f32 = gguf.quants.dequantize(t.data, t.tensor_type)
            q = gguf.quants.quantize(f32, target)
            if target in (QT.F16, QT.F32):
                writer.add_tensor(t.name, q, raw_dtype=target)
            else:
                writer.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=target)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--prefix", default="SmolLM2-135M-Instruct", help="output file name prefix")
    ap.add_argument("--variants", default="Q4_0,Q8_0,F16")
    ap.add_argument("--force", action="store_true", help="rebuild variants that already exist")
    args = ap.parse_args()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    # Remove leftovers of an interrupted run.
    for leftover in args.out_dir.glob(f"{args.prefix}-*.gguf.tmp-*"):
        leftover.unlink(missing_ok=True)

    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if variant not in VARIANTS:
            print(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
        dst = args.out_dir / f"{args.prefix}-{variant}.gguf"
        if dst.exists() and not args.force:
            print(f"  {dst.name}: exists, skipped")
            continue
        t0 = time.monotonic()
        convert(args.src, dst, variant)
        print(f"  {dst.name}: {dst.stat().st_size / 1e6:.0f} MB in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes a deliberately useless drafter: the bundled drafter's config,
tokenizer and tensor shapes with random weights (norms at 1), so it shares
the target's tokenizer but almost never agrees with it. Used by the `auto`
benchmark: `dsi bench modes --drafter OUT` should stay at non-SI's speed.

    python3 scripts/make_bad_drafter.py [OUT]   (default: out/bad-drafter)

Pure Python (struct's half-precision format); no numpy needed.
"""

import json
import random
import shutil
import struct
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "models" / "pystd" / "drafter"


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/bad-drafter")
    out.mkdir(parents=True, exist_ok=True)
    for name in ["config.json", "generation_config.json", "tokenizer.json"]:
        shutil.copy(SRC / name, out / name)
    raw = (SRC / "model.safetensors").read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])
    rng = random.Random(7)
    data = bytearray(len(raw) - 8 - size)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F16", f"{name}: expected F16, found {info['dtype']}"
        begin, end = info["data_offsets"]
        count = (end - begin) // 2
        if name.endswith("norm.weight"):
            values = [1.0] * count
        else:
            values = [rng.gauss(0.0, 0.05) for _ in range(count)]
        data[begin:end] = struct.pack(f"<{count}e", *values)
    (out / "model.safetensors").write_bytes(raw[: 8 + size] + bytes(data))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

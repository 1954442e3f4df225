#!/usr/bin/env python3
"""Generate the dequantization golden file for hearth-kernels' tests.

The oracle is the `gguf` Python package (gguf-py from llama.cpp), whose numpy dequantizers are an
implementation independent of ours. For each weight type we build a few deterministic blocks
(seeded random bytes, with the scale fields overwritten by sane values so the results are finite),
dequantize them with `gguf.quants.dequantize`, and store bytes (hex) + values (float32 → JSON
number, exact round trip) in tests/golden/dequant.json.

Run from anywhere:  python3 crates/kernels/tests/gen_dequant_golden.py
Requires: pip install gguf numpy
"""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

rng = np.random.default_rng(20261123)


def f16_bytes(v):
    return np.array([v], dtype=np.float16).tobytes()


def rand_scale(lo=0.002, hi=0.05, signed=True):
    v = rng.uniform(lo, hi)
    if signed and rng.random() < 0.3:
        v = -v
    return v


# Offsets of the f16 scale fields inside each block (ggml-common.h).
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}

N_BLOCKS = {T.Q2_K: 1, T.Q3_K: 1, T.Q4_K: 1, T.Q5_K: 1, T.Q6_K: 1}


def make_blocks(qt):
    block_len, block_bytes = GGML_QUANT_SIZES[qt]
    nb = N_BLOCKS.get(qt, 3)
    out = bytearray()
    for _ in range(nb):
        b = bytearray(rng.integers(0, 256, size=block_bytes, dtype=np.uint8).tobytes())
        for off in F16_FIELDS.get(qt, []):
            b[off:off + 2] = f16_bytes(rand_scale())
        if qt == T.MXFP4:
            b[0] = int(rng.integers(118, 136))  # E8M0 exponent byte: 2^(e-127) around 1
        out += b
    return bytes(out), nb * block_len


def main():
    golden = {}
    for qt in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.MXFP4, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        data, n = make_blocks(qt)
        vals = dequantize(np.frombuffer(data, dtype=np.uint8), qt).astype(np.float32).reshape(-1)
        assert vals.size == n and np.all(np.isfinite(vals)), qt
        golden[qt.name] = {"hex": data.hex(), "values": [float(v) for v in vals]}
    # Float types: finite values only.
    x = rng.uniform(-4, 4, size=48).astype(np.float32)
    golden["F32"] = {"hex": x.tobytes().hex(), "values": [float(v) for v in x]}
    h = x.astype(np.float16)
    golden["F16"] = {"hex": h.tobytes().hex(), "values": [float(v) for v in dequantize(np.frombuffer(h.tobytes(), dtype=np.uint8), T.F16).reshape(-1)]}
    bf = (x.view(np.uint32) >> 16).astype(np.uint16)  # truncation: any bit pattern is a valid bf16
    golden["BF16"] = {"hex": bf.tobytes().hex(), "values": [float(v) for v in dequantize(np.frombuffer(bf.tobytes(), dtype=np.uint8), T.BF16).reshape(-1)]}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "dequant.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {', '.join(golden)}")


if __name__ == "__main__":
    main()

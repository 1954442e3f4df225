#!/usr/bin/env python3
"""Generate the quantization golden file for hearth-kernels' tests (tests/golden/quant.json).

The oracle is the `gguf` Python package's numpy quantizers (ports of ggml's
quantize_row_*_ref): for Q8_0 and MXFP4, deterministic rows (Gaussian, heavy-tailed, a zero
block, values on rounding ties) and the bytes gguf writes for them. gguf has no Q4_K quantizer,
so Q4_K is checked in the Rust test by its round-trip error only.

Run from anywhere:  python3 crates/kernels/tests/gen_quant_golden.py
Requires: pip install gguf numpy
"""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

rng = np.random.default_rng(20261203)


def rows():
    g = rng.standard_normal(256).astype(np.float32)
    heavy = (rng.standard_t(2, 256) * 0.3).astype(np.float32)
    zero_and_ties = np.concatenate([np.zeros(32), np.arange(-16, 16) * 0.5,
                                    np.array([3.0, -5.0, 1.25, 0.75] * 8)]).astype(np.float32)
    return [g, heavy, zero_and_ties]


out = {}
for t in (T.Q8_0, T.MXFP4):
    out[t.name] = [{"values": [float(v) for v in r], "hex": quantize(r, t).tobytes().hex()}
                   for r in rows()]
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "quant.json")
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
    f.write("\n")
print(path)

#!/usr/bin/env python3
"""Make a large model for the peak-RSS benchmark (issue 7: "peak RSS <= 1.5x the file size").

The shared models are 3.7-22.6 MB, where postmerge's fixed cost (a 32 MB binary with tract linked
in: ~6.5 MB resident before any model is read) dominates the ratio. SPEC section 7 speaks of a
100 MB model; this writes Gold-YOLO-n with one extra initializer of N MB of weights (default 200),
used by nothing, so convert / merge / resize read, keep and write it like any weight.

    python3 bench/make_big.py IN.onnx OUT.onnx [MB]
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper

src, dst = sys.argv[1], sys.argv[2]
mb = int(sys.argv[3]) if len(sys.argv) > 3 else 200
m = onnx.load(src)
rng = np.random.default_rng(7)
pad = rng.standard_normal(mb * (1 << 20) // 4, dtype=np.float32)
m.graph.initializer.append(numpy_helper.from_array(pad, "postmerge_bench_padding"))
onnx.save(m, dst)
print(f"{dst}: {mb} MB of extra weights")

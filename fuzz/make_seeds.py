#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (see ../FUZZING.md).

Real models, with the bytes of every initializer over 4 KiB dropped (dims and dtype kept): no pass
reads conv weights, shape inference and head recognition only need dims and small constants, and
a 60 KB seed runs ~50x faster under libFuzzer than the 3.7 MB original. The small fixtures are
also copied as they are. Needs the `onnx` package (tests/oracle/requirements.txt).

    python3 fuzz/make_seeds.py            # writes fuzz/corpus/{inspect,passes}/seed_*.onnx
"""
import os
import shutil
import sys

import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(REPO, "..", "shared", "models")
MODELS = [
    os.path.join(REPO, "tests/fixtures/goldlike_128x160.onnx"),
    os.path.join(REPO, "tests/fixtures/yolox_nano_128x160.onnx"),
    os.path.join(REPO, "tests/fixtures/yolox_nano_640x640_decode.onnx"),
    os.path.join(SHARED, "yolox_nano_80c_128x160_op11.onnx"),
    os.path.join(SHARED, "gold_yolo_n_80c_128x160_op13.onnx"),
    os.path.join(SHARED, "gold_yolo_n_80c_640x640_op13_e2e_ort.onnx"),  # already merged (set, refusals)
]
AS_IS = [os.path.join(REPO, "tests/fixtures/rich_640x640.onnx")]  # external data: refused from bytes


def strip(path):
    m = onnx.load(path, load_external_data=False)
    for t in m.graph.initializer:
        if len(t.raw_data) > 4096:
            t.raw_data = b""
    return m.SerializeToString()


def main():
    for target in ["inspect", "passes"]:
        out = os.path.join(HERE, "corpus", target)
        os.makedirs(out, exist_ok=True)
        for p in MODELS:
            if not os.path.exists(p):
                print(f"skip {p} (missing)", file=sys.stderr)
                continue
            name = "seed_" + os.path.basename(p)
            with open(os.path.join(out, name), "wb") as f:
                f.write(strip(p))
        for p in AS_IS:
            shutil.copyfile(p, os.path.join(out, "seed_" + os.path.basename(p)))
        print(out, sorted(os.listdir(out)))


if __name__ == "__main__":
    main()

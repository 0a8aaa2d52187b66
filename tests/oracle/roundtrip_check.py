"""Conformance oracle (CI): every model postmerge re-writes is, for the official `onnx` Python
package, the same message field by field (protobuf equality, unknown fields included) and passes
`onnx.checker.check_model(full_check=True)` whenever the input does.

Usage: python tests/oracle/roundtrip_check.py PATH_TO_POSTMERGE_BINARY
Uses ../shared/models (CI has it) and tests/fixtures.
"""
import pathlib
import subprocess
import sys
import tempfile

import onnx

repo = pathlib.Path(__file__).resolve().parents[2]
binary = sys.argv[1]
models = sorted((repo.parent / "shared" / "models").glob("*.onnx")) + sorted((repo / "tests" / "fixtures").glob("*.onnx"))
assert len(models) >= 13, models
failed = 0
with tempfile.TemporaryDirectory() as tmp:
    for m in models:
        out = pathlib.Path(tmp) / m.name
        subprocess.run([binary, "convert", str(m), "-o", str(out)], check=True)
        a = onnx.load(str(m))
        b = onnx.load(str(out))
        same = a == b
        try:
            onnx.checker.check_model(str(m), full_check=True)
            in_ok = True
        except Exception as e:  # noqa: BLE001
            in_ok = False
            print(f"note: input {m.name} fails the checker itself: {e}")
        out_ok = True
        if in_ok:
            try:
                onnx.checker.check_model(str(out), full_check=True)
            except Exception as e:  # noqa: BLE001
                out_ok = False
                print(f"FAIL {m.name}: output fails onnx.checker: {e}")
        if not same:
            print(f"FAIL {m.name}: round trip changed the message")
        failed += (not same) or (not out_ok)
        print(f"{'ok  ' if same and out_ok else 'FAIL'} {m.name}")
print(f"{len(models) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)

#!/usr/bin/python3
"""The checks of tests/examples/onnx_parity.sh on a directory onnx_parity and ort_run.js filled:
onnx.checker.check_model(full_check=True) on every .onnx, and per case and variant (fold, keep) the
largest difference between tricks' logits and ONNX Runtime's, absolute and relative to the largest
|logit| of ONNX Runtime; fails (status 1) above the tolerance.
    onnx_check.py DIR [--tol 1e-4]
"""
import argparse
import pathlib
import sys

import numpy as np
import onnx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    bad = []
    print(f"onnx {onnx.__version__}: checker.check_model(full_check=True); tolerance max|tricks - ort| / max|ort| <= {a.tol:g}")
    print(f"{'case':<20} {'variant':<5} {'nodes':>5} {'checker':>8} {'max |diff|':>11} {'max |logit|':>11} {'relative':>10}")
    for line in (a.dir / "manifest.tsv").read_text().splitlines():
        name, n, c, h, w, k, model_name = line.split("\t")
        ours = np.fromfile(a.dir / f"{name}.tricks.f32", dtype=np.float32).reshape(int(n), int(k))
        for variant in ("fold", "keep"):
            path = a.dir / f"{name}.{variant}.onnx"
            m = onnx.load(str(path))
            try:
                onnx.checker.check_model(m, full_check=True)
                checked = "ok"
            except Exception as e:  # onnx.checker.ValidationError, shape inference errors
                checked = "FAIL"
                bad.append(f"{path.name}: onnx.checker: {e}")
            ort = np.fromfile(a.dir / f"{name}.{variant}.ort.f32", dtype=np.float32)
            if ort.size != ours.size:
                bad.append(f"{path.name}: ONNX Runtime gave {ort.size} logits, tricks {ours.size}")
                continue
            ort = ort.reshape(ours.shape)
            diff = float(np.max(np.abs(ours.astype(np.float64) - ort)))
            scale = float(np.max(np.abs(ort)))
            rel = diff / scale if scale > 0 else diff
            print(f"{name:<20} {variant:<5} {len(m.graph.node):>5} {checked:>8} {diff:>11.3g} {scale:>11.4g} {rel:>10.3g}")
            if not rel <= a.tol:
                bad.append(f"{path.name}: relative difference {rel:.3g} > {a.tol:g}")
    for b in bad:
        print("FAIL:", b, file=sys.stderr)
    if bad:
        return 1
    print("PASS: every export passes onnx.checker and matches tricks' logits in ONNX Runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: structured pruning, the original measured in the same run.

    python examples/bench_prune.py [--runs 200] [--threads 1,2] [--epochs 30]

Part 1, speed. MobileNetV2-1.0-224 from the zoo (random weights, seeded), pruned with
``edgehad.convert(model, prune=0.5)`` (magnitude, 50% of each coupled group's channels, multiples of
8; no fine-tuning: speed does not depend on the weights' values) and exported fp32 to ONNX and
TFLite; the unpruned model exported the same way. With int8: edgehad's pruned int8 ONNX against
onnxruntime's quantize_static (QDQ, per-channel, uint8 activations: its fastest x86 setting) of the
unpruned fp32 ONNX. Timing as in bench_quantize.py: one edgehad.runtime.Session per file and thread
count, 20 warm-up runs, then --runs runs per file interleaved in 10 rounds (rotating order); medians.

Part 2, accuracy. digits_cnn (trained on the digits train split), pruned 50% by each criterion and
recovered with --epochs epochs of distillation; top-1 on the digits val split of the original and
of both exported files.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quantize import BENCH_RECIPE, bench, cells, ort_peer  # noqa: E402  (shared timing and peer code)

PRUNE_INT8_RECIPE = BENCH_RECIPE.replace('name = "int8-bench"', 'name = "prune50-int8-bench"') + """
[stages.prune]
ratio = 0.5
"""
# Measured here: onnxruntime's int8 kernels run channel counts that are multiples of 16 faster on
# AVX-512 (a 72-channel stride-2 depthwise conv took 214 us, 80 channels 106 us), so the script also
# times --prune-round-to 16 beside the default 8 ...
PRUNE16_INT8_RECIPE = PRUNE_INT8_RECIPE + "round_to = 16\n"
# ... and the settings of converters/prune50-int8.toml: round_to 16 and --keep-float speed (the leading
# convs that onnxruntime runs faster in fp32 stay float, timed per layer by edgehad/quantize/speed.py).
PRUNE16_SPEED_RECIPE = PRUNE16_INT8_RECIPE.replace('calib_samples = 64\n', 'calib_samples = 64\nkeep_float = "speed"\n')


def cpu_features() -> str:
    """The SIMD features that decide int8 vs fp32 speed on x86 (AVX-512 VNNI, AMX), from /proc/cpuinfo."""
    try:
        flags = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return "features unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "asimddp", "i8mm")
    return " ".join(f for f in wanted if f in flags) or "no AVX2"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()

    import edgehad
    from edgehad.core.capture import captured
    from edgehad.zoo import get_model

    model = get_model("mobilenet_v2")
    shape = model.example_inputs[0].shape
    calib = [torch.rand(*shape, generator=torch.Generator().manual_seed(1)) for _ in range(64)]
    print(f"# Pruning benchmark\n\nmachine: {platform.processor() or platform.machine()} ({cpu_features()}), {os.cpu_count()} CPUs "
          f"(load average {os.getloadavg()[0]:.1f} at start); {args.runs} runs/file interleaved in 10 rounds after "
          "20 warm-up; median ms.")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "int8.toml").write_text(PRUNE_INT8_RECIPE)
        with captured():
            full = edgehad.convert(model, out=tmp / "full", samples=2)
            pruned = edgehad.convert(model, prune=0.5, out=tmp / "pruned", samples=2)
            pruned_q = edgehad.convert(model, recipe=str(tmp / "int8.toml"), samples=4, out=tmp / "pruned_int8")
            (tmp / "int8_16.toml").write_text(PRUNE16_INT8_RECIPE)
            pruned_q16 = edgehad.convert(model, recipe=str(tmp / "int8_16.toml"), samples=4, out=tmp / "pruned16_int8")
            (tmp / "int8_16_speed.toml").write_text(PRUNE16_SPEED_RECIPE)
            pruned_qs = edgehad.convert(model, recipe=str(tmp / "int8_16_speed.toml"), samples=4, out=tmp / "speed")
            f = {Path(a["path"]).suffix: Path(a["path"]) for a in full["artifacts"]}
            p = {Path(a["path"]).suffix: Path(a["path"]) for a in pruned["artifacts"]}
            pq = {Path(a["path"]).suffix: Path(a["path"]) for a in pruned_q["artifacts"]}
            pq16 = {Path(a["path"]).suffix: Path(a["path"]) for a in pruned_q16["artifacts"]}
            pqs = {Path(a["path"]).suffix: Path(a["path"]) for a in pruned_qs["artifacts"]}
            ort_q = ort_peer(f[".onnx"], calib, "QUInt8", tmp / "ort_qs_u8.onnx")
        info = next(s for s in pruned["stages"] if s["name"] == "prune")["pruning"]
        (p0, p1), (m0, m1) = info["params"], info["macs"]
        print(f"\n## MobileNetV2-1.0-224, --prune 0.5\n\nparams {p0:,} -> {p1:,}; MACs {m0:,} -> {m1:,}\n")
        print("| check | ratio | bar | result |\n|---|---:|---:|---|")
        print(f"| params pruned / original | {cells(p1 / p0, 0.45)} |")
        print(f"| MACs pruned / original | {cells(m1 / m0, 0.35)} |")
        for name, path in (("ONNX", ".onnx"), ("TFLite", ".tflite")):
            print(f"| {name} file size pruned / original | {cells(p[path].stat().st_size / f[path].stat().st_size, None)} |")

        F_O, P_O, F_T, P_T = "original fp32 ONNX", "pruned fp32 ONNX", "original fp32 TFLite", "pruned fp32 TFLite"
        PQ_O, Q_O = "pruned int8 ONNX (edgehad)", "original int8 ONNX (ORT quantize_static)"
        PQ16_O = "pruned int8 ONNX (edgehad, --prune-round-to 16)"
        PQS_O = "pruned int8 ONNX (edgehad, converters/prune50-int8 settings: round-to 16, --keep-float speed)"
        files = {F_O: f[".onnx"], P_O: p[".onnx"], F_T: f[".tflite"], P_T: p[".tflite"], PQ_O: pq[".onnx"],
                 PQ16_O: pq16[".onnx"], PQS_O: pqs[".onnx"], Q_O: ort_q}
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(7)).numpy()
        for th in (int(t) for t in args.threads.split(",")):
            ms = bench(files, th, x, args.runs)
            print(f"\n### latency, {th} thread(s)\n\n| file | median ms |\n|---|---:|")
            print("\n".join(f"| {k} | {v:.2f} |" for k, v in ms.items()))
            print(f"\n| check ({th} thread(s)) | ratio | bar | result |\n|---|---:|---:|---|")
            for a, b, bar in ((P_O, F_O, 0.5), (P_T, F_T, 0.5), (PQ_O, Q_O, 0.5), (PQ16_O, Q_O, 0.5),
                              (PQS_O, Q_O, 0.5)):
                print(f"| {a} / {b} | {cells(ms[a] / ms[b], bar)} |")

    print(f"\n## digits_cnn, --prune 0.5, recovery {args.epochs} epochs (distillation), digits val split\n")
    print("| criterion | MACs kept | val top-1 original | after prune | after recovery: ONNX | TFLite | drop (points) | bar |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for criterion in ("magnitude", "bn-scale", "taylor", "learned"):
        with tempfile.TemporaryDirectory() as tmp, captured():
            rep = edgehad.convert("zoo:digits_cnn", data="digits", prune=0.5, prune_criterion=criterion,
                                  finetune_epochs=args.epochs, out=tmp,
                                  max_accuracy_drop=100)  # the table shows every drop against the bar
        stages = {s["name"]: s for s in rep["stages"]}
        info, metric = stages["prune"]["pruning"], stages["verify"]["task_metric"]
        onnx_acc, tfl_acc = metric["onnx_float"], metric["tflite_float"]
        drop = 100 * (metric["original"] - min(onnx_acc, tfl_acc))
        print(f"| {criterion} | {info['macs_ratio']:.3f} | {metric['original']:.4f} | "
              f"{info['val_accuracy_after_prune']:.4f} | {onnx_acc:.4f} | {tfl_acc:.4f} | {drop:.2f} | "
              f"<= 1.0 {'PASS' if drop <= 1.0 and info['macs_ratio'] <= 0.5 else 'FAIL'} |")


if __name__ == "__main__":
    main()

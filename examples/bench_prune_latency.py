"""Benchmark: latency-aware pruning (``--prune-target latency``), the peer measured in the same run.

    python examples/bench_prune_latency.py [--ratios 0.63,0.66,0.7] [--blocks 0.5:0.66,1.0:0.66,1.0:0.7]
                                           [--runs 200] [--round-to 16]

MobileNetV2-1.0-224 from the zoo (random weights, torch.manual_seed(0): speed only), converted with
edgehad's int8 recipe of examples/bench_quantize.py (PT2E, random calibration, ONNX) with
converters/prune50-int8's ``keep_float = "speed"``, plus
``[stages.prune] target = "latency"`` at each asked ratio R (the fraction of latency removed: the
pruned file should run in 1 - R of the unpruned int8 file's time), ``round_to`` 16, no fine-tuning
(speed does not depend on the weights). ``--blocks F:R`` rows first remove the fraction F of the
residual blocks (``[stages.prune] blocks``: least block influence per table microsecond, random
weights), then allocate widths so that the whole file keeps 1 - R of the original's time. The per-layer latency table is measured on this machine at
1 thread in int8 (edgehad/prune/latency_table.py) and cached, so only the first ratio measures it.
Beside them: edgehad's unpruned int8 file, same recipe (what R is asked against), the uniform prune
of converters/prune50-int8 (50% of every group's channels, round-to 16) and the peer, onnxruntime's
quantize_static (QDQ, per-channel, uint8 activations) of the unpruned fp32 ONNX, as in
bench_quantize.py. All files are timed in one process at 1 thread, interleaved in rounds
(bench_quantize.bench); medians.

Columns: asked = 1 - R; predicted = the prune stage's table prediction; prune stage = its own
side-by-side int8 timing of the pruned model (edgehad/prune/latency.py); measured = the final file
against edgehad's unpruned int8 file, in this run; MACs kept; speedup against the peer.
Bar (issue 16): the best latency-aware file >= 3x faster than the peer, MACs kept >= 0.25x, and its
measured ratio within 10% of the asked one. Figures move on a loaded machine: the header and footer
give the load average; read the ratios.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prune import cpu_features  # noqa: E402
from bench_quantize import BENCH_RECIPE, bench, ort_peer  # noqa: E402  (shared timing and peer code)


# converters/prune50-int8's quantize setting: the leading convs onnxruntime runs faster in fp32 stay float
# (edgehad/quantize/speed.py); the latency table knows it (edgehad/prune/allocate.py FloatPrefix)
INT8_SPEED = BENCH_RECIPE.replace("calib_samples = 64\n", 'calib_samples = 64\nkeep_float = "speed"\n')


def recipe(prune: str) -> str:
    return INT8_SPEED.replace('name = "int8-bench"', 'name = "prune-latency-bench"') + "[stages.prune]\n" + prune


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", default="0.63,0.66,0.7", help="latency fractions to remove, comma-separated")
    ap.add_argument("--blocks", default="0.5:0.66,1.0:0.66,1.0:0.7",
                    help="F:R pairs, comma-separated: remove the fraction F of the residual blocks, then R of the latency")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--round-to", type=int, default=16)
    args = ap.parse_args()

    import platform

    import edgehad
    from edgehad.core.capture import captured
    from edgehad.prune.latency_table import cache_dir
    from edgehad.zoo import get_model

    torch.manual_seed(0)
    model = get_model("mobilenet_v2")
    shape = model.example_inputs[0].shape
    calib = [torch.rand(*shape, generator=torch.Generator().manual_seed(1)) for _ in range(64)]
    ratios = [float(r) for r in args.ratios.split(",") if r]
    block_rows = [tuple(map(float, pair.split(":"))) for pair in args.blocks.split(",") if pair]
    print(f"# Latency-aware pruning benchmark\n\nmachine: {platform.processor() or platform.machine()} "
          f"({cpu_features()}), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"1 thread; {args.runs} runs/file interleaved in 10 rounds after 20 warm-up; median ms. "
          f"Latency table cache: {os.environ.get('EDGEHAD_LATENCY_CACHE') or cache_dir()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reports, files = {}, {}

        def convert(key: str, text: str):
            (tmp / f"{key}.toml").write_text(text)
            t0 = time.perf_counter()
            with captured():
                rep = edgehad.convert(model, recipe=str(tmp / f"{key}.toml"), formats="onnx", samples=4,
                                      out=tmp / key, finetune_epochs=0)
            reports[key] = rep
            files[key] = Path(next(a["path"] for a in rep["artifacts"] if a["format"] == "onnx"))
            print(f"converted {key} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

        with captured():
            fp32 = edgehad.convert(model, formats="onnx", out=tmp / "fp32", samples=2)
        fp32_onnx = Path(fp32["artifacts"][0]["path"])
        with captured():
            files["peer"] = ort_peer(fp32_onnx, calib, "QUInt8", tmp / "ort_qs_u8.onnx")
        convert("int8", INT8_SPEED)
        convert("uniform", recipe(f"ratio = 0.5\nround_to = {args.round_to}\n"))
        for r in ratios:
            convert(f"latency{r}", recipe(f'ratio = {r}\ntarget = "latency"\nround_to = {args.round_to}\n'))
        for f, r in block_rows:
            convert(f"blocks{f}:{r}", recipe(f'ratio = {r}\ntarget = "latency"\nround_to = {args.round_to}\n'
                                             f'blocks = {f}\n'))

        x = torch.rand(*shape, generator=torch.Generator().manual_seed(7)).numpy()
        ms = bench(files, 1, x, args.runs)

    macs0 = fp32["source"]["macs"]
    print("| file | asked | predicted | prune stage | measured | MACs kept | median ms | speedup vs peer | "
          "within 10% | >= 3x, MACs >= 0.25x |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    print(f"| onnxruntime quantize_static, unpruned (peer) | | | | | 1.000 | {ms['peer']:.3f} | 1.00 | | |")
    print(f"| edgehad int8 (keep-float speed), unpruned | | | | 1.000 | 1.000 | {ms['int8']:.3f} | "
          f"{ms['peer'] / ms['int8']:.2f} | | |")
    best = None
    for key in ["uniform"] + [f"latency{r}" for r in ratios] + [f"blocks{f}:{r}" for f, r in block_rows]:
        info = next(s for s in reports[key]["stages"] if s["name"] == "prune")["pruning"]
        target = info.get("latency_target")
        macs = info["macs"][1] / macs0
        measured = ms[key] / ms["int8"]
        speedup = ms["peer"] / ms[key]
        if target is None:
            print(f"| uniform 50% of channels (prune50-int8 settings) | | | | {measured:.3f} | "
                  f"{macs:.3f} | {ms[key]:.3f} | {speedup:.2f} | | |")
            continue
        close = abs(measured - target["asked"]) <= 0.10 * target["asked"]
        bar = close and speedup >= 3.0 and macs >= 0.25
        stage = "n/a" if target["measured"] is None else f"{target['measured']:.3f}"
        if key.startswith("blocks"):
            f, r = key[6:].split(":")
            removed = len(info["blocks"]["removed"])
            label = f"--prune-blocks {f} ({removed} of {info['blocks']['candidates']}) --prune {r}"
        else:
            label = f"--prune {key[7:]}"
        print(f"| latency-aware, {label} | {target['asked']:.3f} | {target['predicted']:.3f} | {stage} | "
              f"{measured:.3f} | {macs:.3f} | {ms[key]:.3f} | {speedup:.2f} | {'yes' if close else 'no'} | "
              f"{'PASS' if bar else 'FAIL'} |")
        if close and macs >= 0.25 and (best is None or speedup > best[1]):
            best = (key, speedup)
        print(f"  table: {target['table']['measured_now']} widths measured in this convert, "
              f"calibration {target['calibration']}", file=sys.stderr)
    verdict = "none within 10% of asked at MACs >= 0.25x" if best is None else \
        f"best {best[0]}: {best[1]:.2f}x the peer ({'PASS' if best[1] >= 3.0 else 'FAIL'} at >= 3x)"
    print(f"\nBar: {verdict}. Load average at end {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()

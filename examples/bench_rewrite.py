"""Benchmark: Hadamard rewrites against the original, measured in the same run.

    python examples/bench_rewrite.py [--seqs 256,1024,4096] [--threads 1] [--epochs 30] [--skip-speed]

Part 1, speed (attention-to-aft). The zoo transformer_encoder (dim 256, 4 heads, depth 4, MLP 4x,
random weights) at each sequence length: the original (softmax attention), the attention-to-aft
rewrite, and AFT + ffn-to-glu at 2/3 width (the feed-forward at equal params is no cheaper; a GLU
with hidden = dim is the "fewer MACs elsewhere" combination, reported as such). Each model is
exported with edgehad.convert (both formats, verified) and timed with edgehad.runtime.Session at
--threads threads: warm-up, then runs interleaved in rounds, median ms. The mixer alone (the zoo's
SelfAttention vs the AFT block, projections included) is timed at 1024.

Part 2, accuracy. digits_transformer (8 row tokens, trained by examples/train_digits.py):
attention-to-aft + --epochs of distillation; act-to-hard-gate on the digits SiLU models + a short
distillation + int8, against the SiLU model's own int8 accuracy. Top-1 on the digits val split, in
both exported files.
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
from bench_prune import cpu_features  # noqa: E402
from bench_quantize import bench  # noqa: E402


def convert(model, out: Path, **kw) -> dict:
    import edgehad
    from edgehad.core.capture import captured

    with captured():
        report = edgehad.convert(model, out=out, samples=2, **kw)
    return {Path(a["path"]).suffix[1:]: Path(a["path"]) for a in report["artifacts"]} | {"report": report}


def glu_narrow(model):
    """Replace each MLP (dim -> 4·dim -> dim: 8·dim² MACs per token) by a GEGLU with hidden = dim (3·dim²).

    Not an equal-parameter swap (ffn-to-glu keeps hidden = 2/3 of the MLP's, the same MACs): the
    narrower feed-forward needs distillation to earn its accuracy back; here it is timed only.
    """
    from torch import nn

    from edgehad.blocks.glu import GLUFeedForward

    for block in model.blocks:
        dim = block.mlp[0].in_features
        block.mlp = nn.Sequential(GLUFeedForward(dim, dim, "geglu", bias=True))
    return model


def speed(args) -> None:
    from edgehad.cost import count_macs
    from edgehad.rewrite import apply_rules, get_rules
    from edgehad.zoo import SelfAttention, get_model

    print(f"\n## transformer_encoder (dim 256, 4 heads, depth 4, MLP 4x), {args.threads} thread(s)\n")
    print("| seq | model | MACs | ONNX ms | TFLite ms | MAC ratio | ONNX speed-up | TFLite speed-up | bar |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    per_seq = {}
    for seq in (int(s) for s in args.seqs.split(",")):
        base = get_model("transformer_encoder", seq_len=seq)
        x = base.example_inputs
        aft, _ = apply_rules(base, x, get_rules("attention-to-aft"))
        combo = glu_narrow(apply_rules(base, x, get_rules("attention-to-aft"))[0])
        aft.example_inputs = combo.example_inputs = x
        models = {"softmax attention (original)": base, "attention-to-aft": aft,
                  "attention-to-aft + GLU FFN hidden=dim": combo}
        with tempfile.TemporaryDirectory() as tmp:
            files, macs = {}, {}
            for i, (name, m) in enumerate(models.items()):
                out = convert(m, Path(tmp) / str(i))
                files[name + " onnx"], files[name + " tflite"] = out["onnx"], out["tflite"]
                macs[name] = count_macs(m, x)
            runs = {256: 100, 1024: 30}.get(seq, 10)
            ms = bench(files, args.threads, x[0].numpy(), runs, rounds=min(10, runs))
        orig = "softmax attention (original)"
        per_seq[seq] = {}
        for name in models:
            o, t = ms[name + " onnx"], ms[name + " tflite"]
            per_seq[seq][name] = (o, t)
            bar = {1024: 1.5, 4096: 3.0}.get(seq) if name == "attention-to-aft" else None
            so, st = ms[orig + " onnx"] / o, ms[orig + " tflite"] / t
            verdict = "-" if bar is None else f">= {bar}x {'PASS' if min(so, st) >= bar else 'FAIL'}"
            print(f"| {seq} | {name} | {macs[name] / 1e9:.2f} G | {o:.1f} | {t:.1f} | {macs[orig] / macs[name]:.2f}x | "
                  f"{so:.2f}x | {st:.2f}x | {verdict} |")
    if 1024 in per_seq and 4096 in per_seq:
        print("\n| model | latency(4096) / latency(1024), ONNX | TFLite | bar |\n|---|---:|---:|---|")
        for name in per_seq[1024]:
            o = per_seq[4096][name][0] / per_seq[1024][name][0]
            t = per_seq[4096][name][1] / per_seq[1024][name][1]
            bar = f"<= 5 {'PASS' if max(o, t) <= 5 else 'FAIL'}" if name == "attention-to-aft" else "-"
            print(f"| {name} | {o:.2f} | {t:.2f} | {bar} |")

    # the mixer alone at 1024, projections included
    from edgehad.blocks.aft import AFTSimple

    attn = SelfAttention(256, 4).eval()
    mixer = AFTSimple(256).eval()
    x = (torch.randn(1, 1024, 256),)
    attn.example_inputs = mixer.example_inputs = x
    with tempfile.TemporaryDirectory() as tmp:
        a, m = convert(attn, Path(tmp) / "a"), convert(mixer, Path(tmp) / "m")
        files = {"softmax onnx": a["onnx"], "softmax tflite": a["tflite"], "aft onnx": m["onnx"], "aft tflite": m["tflite"]}
        ms = bench(files, args.threads, x[0].numpy(), 30, rounds=10)
    so, st = ms["softmax onnx"] / ms["aft onnx"], ms["softmax tflite"] / ms["aft tflite"]
    print(f"\nmixer alone at seq 1024 (projections included): softmax {ms['softmax onnx']:.2f} / "
          f"{ms['softmax tflite']:.2f} ms, AFT-simple {ms['aft onnx']:.2f} / {ms['aft tflite']:.2f} ms "
          f"(ONNX / TFLite): {so:.2f}x and {st:.2f}x faster (bar >= 2.5x: "
          f"{'PASS' if min(so, st) >= 2.5 else 'FAIL'})")


def accuracy(args) -> None:
    import edgehad
    from edgehad.core.capture import captured

    print(f"\n## accuracy on the digits val split (top-1, both files)\n")
    print("| model | rewrite | original | torch after rewrite | ONNX | TFLite | drop (points) | bar |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp, captured():
        rep = edgehad.convert("zoo:digits_transformer", data="digits", rewrite="attention-to-aft",
                              finetune_epochs=args.epochs, out=Path(tmp) / "t",
                              max_accuracy_drop=100)  # the table judges the drop against its own bar
    m = next(s for s in rep["stages"] if s["name"] == "verify")["task_metric"]
    drop = 100 * (m["original"] - min(m["onnx_float"], m["tflite_float"]))
    print(f"| digits_transformer | attention-to-aft + {args.epochs} epochs distillation | {m['original']:.4f} | "
          f"{m['torch_float']:.4f} | {m['onnx_float']:.4f} | {m['tflite_float']:.4f} | {drop:.2f} | "
          f"<= 1.0 {'PASS' if drop <= 1.0 else 'FAIL'} |")

    print("\n| model | SiLU int8 ONNX / TFLite | hard-gate int8 ONNX / TFLite | bar |\n|---|---:|---:|---|")
    for spec, args_, data in (("zoo:digits_cnn", {"act": "silu"}, "digits"),
                              ("zoo:efficientnet_b0", {"pretrained": "digits"}, "digits?size=32&channels=3")):
        with tempfile.TemporaryDirectory() as tmp, captured():
            silu = edgehad.convert(spec, model_args=args_, data=data, quantize="int8", out=Path(tmp) / "s",
                                   max_accuracy_drop=100)
            hard = edgehad.convert(spec, model_args=args_, data=data, rewrite="act-to-hard-gate",
                                   finetune_epochs=max(3, args.epochs // 3), quantize="int8", out=Path(tmp) / "h",
                                   max_accuracy_drop=100)
        a = next(s for s in silu["stages"] if s["name"] == "verify")["task_metric"]
        b = next(s for s in hard["stages"] if s["name"] == "verify")["task_metric"]
        ok = min(b["onnx_int8"], b["tflite_int8"]) >= min(a["onnx_int8"], a["tflite_int8"])
        print(f"| {spec[4:]} {args_} | {a['onnx_int8']:.4f} / {a['tflite_int8']:.4f} | "
              f"{b['onnx_int8']:.4f} / {b['tflite_int8']:.4f} | no worse: {'PASS' if ok else 'FAIL'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqs", default="256,1024,4096")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    print(f"# Rewrite benchmark\n\nmachine: {platform.processor() or platform.machine()} ({cpu_features()}), "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at start)")
    if not args.skip_speed:
        speed(args)
    accuracy(args)


if __name__ == "__main__":
    main()

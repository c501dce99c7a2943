"""Train the zoo's pretrained digits models and write their weights to edgehad/weights/.

    python examples/train_digits.py            # all nine models, a few CPU-minutes
    python examples/train_digits.py --only digits_cnn-relu-se

What it trains, on scikit-learn's handwritten digits (``edgehad.data``, the
stratified 80/20 split with seed 0; accuracy is measured on its 360-sample val
split, which is never used for training or model selection: the weights are
those of the last epoch):

- ``digits_cnn`` for act in (relu, silu) x gate in (None, se, glu), input
  ``digits`` [N, 1, 8, 8], bar: val accuracy >= 97%;
- ``mobilenet_v3_small`` and ``efficientnet_b0`` at width 0.5, 10 classes, on
  ``digits?size=32&channels=3`` [N, 3, 32, 32];
- ``digits_transformer`` (the image as 8 row tokens, softmax attention), input
  ``digits`` [N, 1, 8, 8], bar: val accuracy >= 95%.

Inputs are pixels / 16 in [0, 1], no normalization. Augmentation: random
translations (up to 1 pixel at 8x8, 4 pixels at 32x32, zero fill), the only
one that keeps a digit a digit. AdamW with a one-cycle learning rate schedule,
label smoothing 0.1.

Reproducible: fixed seeds per model, deterministic algorithms, 2 threads; a
rerun on the same machine writes the same weights (the file bytes may still
differ: safetensors writes its metadata header in hash order). Files are
``edgehad/weights/<name>.safetensors``, written atomically, with metadata
(val accuracy, data spec, epochs, seed, dtype). A file whose float32 weights
exceed ~2 MB is stored as float16 (efficientnet_b0 here); ``edgehad.zoo``
casts back to float32 on load, and the accuracy printed is measured after that
round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a
# shared 2-core machine spinning threads of two processes starve each other and
# a 100 ms training step sometimes took 10 s; passive waiting removes those stalls.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgehad import zoo  # noqa: E402
from edgehad.core.files import atomic_path  # noqa: E402
from edgehad.data import load_data  # noqa: E402

MAX_FP32_BYTES = 2_000_000
VERBOSE = False


@dataclass
class Job:
    name: str  # weight file stem
    model: str
    kwargs: dict
    data: str
    epochs: int
    lr: float
    shift: int  # max random translation, pixels
    bar: float  # accuracy the committed weights must reach
    batch_size: int = 64


JOBS = [
    Job(f"digits_cnn-{act}-{gate}", "digits_cnn", {"act": act, "gate": gate}, "digits", 40, 3e-3, 1, 0.97)
    for act in ("relu", "silu")
    for gate in (None, "se", "glu")
] + [
    Job("mobilenet_v3_small-digits", "mobilenet_v3_small", {}, "digits?size=32&channels=3", 40, 5e-3, 4, 0.95, 128),
    Job("efficientnet_b0-digits", "efficientnet_b0", {}, "digits?size=32&channels=3", 30, 5e-3, 4, 0.95, 128),
    Job("digits_transformer", "digits_transformer", {}, "digits", 80, 3e-3, 1, 0.95),
]


def build(job: Job) -> torch.nn.Module:
    if job.model in ("digits_cnn", "digits_transformer"):
        return zoo.get_model(job.model, pretrained=False, **job.kwargs)
    return zoo.get_model(job.model, width_mult=0.5, num_classes=10, input_size=32, **job.kwargs)


def shift_batch(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by a random (dy, dx) in [-max_shift, max_shift], filling with zeros."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=g)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def train(job: Job):
    data = load_data(job.data)
    xt, yt = torch.from_numpy(data.train[0]), torch.from_numpy(data.train[1])
    torch.manual_seed(0)
    model = build(job)
    # channels_last: PyTorch's CPU depthwise convolutions (MobileNet, EfficientNet)
    # train several times faster in NHWC; the 8x8 CNN gains nothing from it
    fmt = torch.channels_last if job.model not in ("digits_cnn", "digits_transformer") else torch.contiguous_format
    model = model.to(memory_format=fmt)
    batch_size = job.batch_size
    g = torch.Generator().manual_seed(0)
    steps_per_epoch = -(-len(xt) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=job.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, job.lr, total_steps=job.epochs * steps_per_epoch)
    for epoch in range(job.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch_size):
            idx = order[i : i + batch_size]
            xb = shift_batch(xt[idx], job.shift, g).contiguous(memory_format=fmt)
            loss = F.cross_entropy(model(xb), yt[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if VERBOSE:
            print(f"  {job.name} epoch {epoch + 1}/{job.epochs}: loss {loss.item():.3f} "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    model.eval()
    return model.to(memory_format=torch.contiguous_format), data


def save(job: Job, model: torch.nn.Module, acc: float) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    fp32_bytes = sum(v.numel() * v.element_size() for v in state.values())
    dtype = "float32"
    if fp32_bytes > MAX_FP32_BYTES:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
        dtype = "float16"
    meta = {
        "model": job.model,
        "kwargs": json.dumps(job.kwargs),
        "data": job.data,
        "val_accuracy": f"{acc:.4f}",
        "epochs": str(job.epochs),
        "seed": "0",
        "stored_dtype": dtype,
        "trained_by": "examples/train_digits.py",
    }
    dest = ROOT / "edgehad" / "weights" / f"{job.name}.safetensors"
    with atomic_path(dest) as tmp:
        save_file(state, str(tmp), metadata=meta)
        tmp.chmod(0o644)  # mkstemp creates 0600; package data should be world-readable
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="weight file stems to train (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print loss and time per epoch")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    # Subnormal floats are slow on x86 and carry nothing a classifier needs;
    # flushing them is part of the recipe the committed weights came from.
    torch.set_flush_denormal(True)
    unknown = set(args.only or ()) - {j.name for j in JOBS}
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {[j.name for j in JOBS]}")
    jobs = [j for j in JOBS if not args.only or j.name in args.only]
    rows, failed = [], []
    start = time.perf_counter()
    for job in jobs:
        t0 = time.perf_counter()
        model, data = train(job)
        trained_acc = accuracy(model, *data.val)
        dest = save(job, model, trained_acc)
        # measure what users get: the committed file loaded through the zoo
        loaded = zoo.get_model(job.model, pretrained="digits" if job.model != "digits_cnn" else True, **job.kwargs)
        acc = accuracy(loaded, *data.val)
        secs = time.perf_counter() - t0
        ok = acc >= job.bar
        failed += [] if ok else [job.name]
        rows.append((job.name, acc, job.bar, dest.stat().st_size, secs, ok))
        print(f"{job.name:28s} val acc {acc:.4f}  ({secs:.0f} s)", file=sys.stderr)
    print(f"\n{'model':28s} {'val acc':>8s} {'bar':>6s} {'file':>10s} {'time':>7s}")
    for name, acc, bar, size, secs, ok in rows:
        print(f"{name:28s} {acc:8.2%} {bar:6.0%} {size / 1e6:8.2f}MB {secs:6.0f}s {'' if ok else 'BELOW BAR'}")
    print(f"total {time.perf_counter() - start:.0f} s on {torch.get_num_threads()} threads")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

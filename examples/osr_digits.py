"""Open-set recognition on handwritten digits: COSTARR against MSP, MaxLogit, Energy and its ablations.

    python examples/osr_digits.py                    # 3 splits x 3 seeds, about a minute on 2 cores
    python examples/osr_digits.py --splits 5 --seeds 5 --json results.json

The protocol (issue #8, part 5). For each known/unknown split of the ten digits
(6 known, 4 unknown; split 0 is 0-5 / 6-9, the others are drawn at random with
a fixed seed) and each training seed:

1. train ``zoo.DigitsCNN(num_classes=6)`` (the ``digits_cnn`` architecture,
   relu, no gate) from scratch on the *train* split of the known classes only
   (``digits?classes=K``): AdamW, one-cycle learning rate, random 1-pixel
   translations, plain cross-entropy (no label smoothing: it compresses the
   logits MaxLogit and Energy read, so it would handicap them);
2. fit the COSTARR statistics on that same train split (correctly classified
   samples only, ``edgehad.osr.stats.fit_stats``);
3. score the *val* split of the known classes (positives) and of the unknown
   classes (negatives) with every score of ``edgehad.osr.scores``, and
   compute AUROC, FPR at 95% TPR and AUOSCR (``edgehad.osr.metrics``).

The table gives mean ± std (sample std, ddof=1) over all split x seed runs;
higher AUROC/AUOSCR and lower FPR95 are better. Nothing is tuned on the
unknowns. The val split is never used for training or fitting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: the machine is shared

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgehad import zoo  # noqa: E402
from edgehad.data import load_data  # noqa: E402
from edgehad.osr import features, metrics, scores, stats  # noqa: E402

KNOWN = 6
METRICS = (("auroc", "AUROC ↑"), ("fpr95", "FPR95 ↓"), ("auoscr", "AUOSCR ↑"))


def make_splits(n: int) -> list[tuple[list[int], list[int]]]:
    """Split 0: 0-5 known, 6-9 unknown; the rest drawn from a seeded permutation (distinct splits)."""
    splits = [(list(range(KNOWN)), list(range(KNOWN, 10)))]
    rng = np.random.default_rng(2025)
    while len(splits) < n:
        perm = rng.permutation(10)
        known = sorted(int(c) for c in perm[:KNOWN])
        if all(known != k for k, _ in splits):
            splits.append((known, sorted(int(c) for c in perm[KNOWN:])))
    return splits


def shift_batch(x: torch.Tensor, g: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Translate each image by a random (dy, dx) in [-max_shift, max_shift], zero fill."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    off = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=g)
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(off.tolist())])


def train(x: np.ndarray, y: np.ndarray, seed: int, epochs: int, lr: float = 3e-3, batch: int = 64):
    torch.manual_seed(seed)
    model = zoo.DigitsCNN(num_classes=KNOWN)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    steps = -(-len(xt) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(shift_batch(xt[idx], g)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def run_one(known: list[int], unknown: list[int], seed: int, epochs: int) -> dict:
    kspec = "digits?classes=" + ",".join(map(str, known))
    uspec = "digits?classes=" + ",".join(map(str, unknown))
    kd, ud = load_data(kspec), load_data(uspec)
    model = train(*kd.train, seed=seed, epochs=epochs)
    st = stats.fit_stats(model, *kd.train, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    name, linear = features.find_classifier(model, example_inputs=(torch.from_numpy(kd.val[0][:1]),))
    W = features.classifier_weight(linear)
    fk, zk = features.penultimate(model, name, kd.val[0])
    fu, zu = features.penultimate(model, name, ud.val[0])
    correct = zk.argmax(1) == kd.val[1]
    table = metrics.evaluate(scores.all_scores(fk, zk, W, st), correct, scores.all_scores(fu, zu, W, st))
    return {"known": known, "unknown": unknown, "seed": seed, "accuracy": float(correct.mean()),
            "n_known": int(len(correct)), "n_unknown": int(len(fu)), "scores": table}


def summarize(runs: list[dict]) -> str:
    """A markdown table: one row per score, mean ± std of each metric over the runs; best mean in bold."""
    names = list(runs[0]["scores"])
    cells: dict = {}
    best: dict = {}
    for key, _ in METRICS:
        means = {n: np.mean([r["scores"][n][key] for r in runs]) for n in names}
        best[key] = (min if key == "fpr95" else max)(means, key=means.get)
        for n in names:
            vals = [r["scores"][n][key] for r in runs]
            sd = np.std(vals, ddof=1) if len(vals) > 1 else 0.0
            cells[n, key] = f"{means[n]:.3f} ± {sd:.3f}"
    lines = ["| score | " + " | ".join(h for _, h in METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for n in names:
        row = [f"**{cells[n, k]}**" if best[k] == n else cells[n, k] for k, _ in METRICS]
        lines.append(f"| {n} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def paired(runs: list[dict], ref: str = "costarr") -> str:
    """Per-run AUROC and FPR95 differences of each score minus ``ref`` (paired: same model, same data).

    The ± of ``summarize`` is mostly the spread between splits, which every
    score shares; the paired difference shows whether one score beats another
    on the same runs, and in how many of them.
    """
    lines = [f"| score | AUROC − {ref} | runs with higher AUROC | FPR95 − {ref} |", "|---|---:|---:|---:|"]
    for n in runs[0]["scores"]:
        if n == ref:
            continue
        da = np.array([r["scores"][n]["auroc"] - r["scores"][ref]["auroc"] for r in runs])
        df = np.array([r["scores"][n]["fpr95"] - r["scores"][ref]["fpr95"] for r in runs])
        sd = (lambda a: np.std(a, ddof=1) if len(a) > 1 else 0.0)
        lines.append(f"| {n} | {da.mean():+.4f} ± {sd(da):.4f} | {int((da > 0).sum())}/{len(runs)} | "
                     f"{df.mean():+.4f} ± {sd(df):.4f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=3, help="known/unknown splits (default 3)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per split (default 3)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--json", metavar="FILE", help="also write every run's numbers to FILE")
    args = parser.parse_args()
    if not 1 <= args.splits <= 50 or args.seeds < 1 or args.epochs < 1:
        parser.error("--splits must be 1..50, --seeds and --epochs at least 1")
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    runs = []
    for known, unknown in make_splits(args.splits):
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            r = run_one(known, unknown, seed, args.epochs)
            runs.append(r)
            print(f"known {known} unknown {unknown} seed {seed}: closed-set acc {r['accuracy']:.3f}, "
                  f"AUROC costarr {r['scores']['costarr']['auroc']:.3f} msp {r['scores']['msp']['auroc']:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    acc = [r["accuracy"] for r in runs]
    print(f"digits, {args.splits} splits x {args.seeds} seeds ({len(runs)} runs) of {KNOWN} known / "
          f"{10 - KNOWN} unknown classes, DigitsCNN trained {args.epochs} epochs on the known classes; "
          f"val inputs per run (mean): {np.mean([r['n_known'] for r in runs]):.0f} known, "
          f"{np.mean([r['n_unknown'] for r in runs]):.0f} unknown; "
          f"closed-set accuracy {np.mean(acc):.3f} ± {np.std(acc, ddof=1) if len(acc) > 1 else 0:.3f}\n")
    print(summarize(runs))
    print("\npaired differences, per run:\n")
    print(paired(runs))
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

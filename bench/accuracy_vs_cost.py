"""Accuracy vs cost of the diffusion refinement on the held-out test series (not a test).

    python bench/accuracy_vs_cost.py --data ../shared/data/spider-t2space --splits WORK/splits.json

For every (samples, steps) in the grid, and t_start values at the default S and steps: mean Dice per
structure on the central slice, heatmap AUROC and seconds per case. Writes a Markdown table and a
plot (Dice vs seconds) to ``bench/results/accuracy_vs_cost.{md,png,json}``; the presets in
``SpineSegDiffLib/options.py`` are picked on this curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SpineSegDiff"))
sys.path.insert(0, str(REPO))


def main() -> None:
    from SpineSegDiffLib.options import SegmentOptions
    from SpineSegDiffLib.pipeline import Segmenter
    from SpineSegDiffTraining.datasets import load_dataset
    from SpineSegDiffTraining.evaluate import evaluate_case, summarise
    from SpineSegDiffTraining.splits import Splits

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 5, 15])
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--t-starts", type=int, nargs="+", default=[15, 30, 45])
    args = parser.parse_args()

    cases = {c.case_id: c for c in load_dataset(args.data)}
    test = Splits.load(args.splits).test
    segmenter = Segmenter(device="cpu")
    grid = {"nnU-Net only": SegmentOptions(refine=False, device="cpu")}
    for s in args.samples:
        for n in args.steps:
            grid[f"S={s}, steps={n}"] = SegmentOptions(samples=s, steps=n, fused_steps=n, device="cpu")
    for t in args.t_starts:
        grid[f"S=15, steps=10, t_start={t}"] = SegmentOptions(t_start=t, device="cpu")
    rows = {}
    for name, options in grid.items():
        per_case = {}
        for case_id in test:
            image, truth = cases[case_id].read()
            per_case[case_id] = evaluate_case(segmenter, image, truth, options)
        rows[name] = summarise(per_case)
        print(name, json.dumps(rows[name]), flush=True)
    write(rows, REPO / "bench" / "results")


def write(rows: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accuracy_vs_cost.json").write_text(json.dumps(rows, indent=2))
    lines = ["| setting | SC | VB | IVD | mean Dice | heatmap AUROC | s/case |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['dice']['SC']:.3f} | {r['dice']['VB']:.3f} | {r['dice']['IVD']:.3f} | "
                     f"{r['mean_dice']:.3f} | {r['auroc']:.3f} | {r['seconds']:.1f} |")
    (folder / "accuracy_vs_cost.md").write_text("\n".join(lines) + "\n")
    figure, ax = plt.subplots(figsize=(6, 4))
    for name, r in rows.items():
        ax.scatter(r["seconds"], r["mean_dice"])
        ax.annotate(name, (r["seconds"], r["mean_dice"]), fontsize=6)
    ax.set_xlabel("seconds per case (2 CPU cores)")
    ax.set_ylabel("mean Dice, central slice")
    figure.tight_layout()
    figure.savefig(folder / "accuracy_vs_cost.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()

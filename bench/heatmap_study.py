"""What makes the uncertainty heatmap track the errors? Central slices of the held-out SPIDER series,
the bundled models, S = 15 chains and 5 steps, for several DDIM ``eta`` and ``t_start`` values: Dice,
heatmap AUROC over all pixels and near the spine (within 10 px), and the per-case correlation between
mean uncertainty and Dice.

    python bench/heatmap_study.py --data ../shared/data/spider-t2space --splits WORK/splits.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "SpineSegDiff"), str(REPO)]

from SpineSegDiffLib.options import SegmentOptions  # noqa: E402
from SpineSegDiffLib.pipeline import Segmenter  # noqa: E402
from SpineSegDiffTraining.datasets import load_dataset  # noqa: E402
from SpineSegDiffTraining.evaluate import evaluate_case, method_table  # noqa: E402
from SpineSegDiffTraining.splits import Splits  # noqa: E402

SETTINGS = {f"eta {eta}, t_start {t}": {"eta": eta, "t_start": t}
            for t, eta in ((30, 0.0), (30, 1.0), (45, 0.0), (45, 1.0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True)
    parser.add_argument("--models", type=Path, help="model folders (default: the bundled ones)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    cases = {c.case_id: c for c in load_dataset(args.data)}
    test = Splits.load(args.splits).test
    segmenter = Segmenter(args.models, args.device)
    results: dict[str, dict[str, dict]] = {}
    for name, setting in SETTINGS.items():
        options = SegmentOptions(samples=15, steps=5, fused_steps=5, device=args.device, **setting)
        results[name] = {}
        for case_id in test:
            image, truth = cases[case_id].read()
            results[name][case_id] = evaluate_case(segmenter, image, truth, options)
        print(method_table({name: results[name]}, name, "s/case").splitlines()[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "heatmap_study.json").write_text(json.dumps(results, indent=2))
    caption = (f"Held-out SPIDER series: {len(test)}; central slice, S = 15, 5 steps; AUROC near spine = pixels "
               "within 10 px of a predicted or true structure.")
    (args.out / "heatmap_study.md").write_text(method_table(results, caption, "s/case"))


if __name__ == "__main__":
    main()

"""Accuracy vs cost of the diffusion refinement on the held-out test series (not a test).

    python bench/accuracy_vs_cost.py prepare --data ../shared/data/spider-t2space --splits WORK/splits.json
    python bench/accuracy_vs_cost.py grid [--device auto] [--seeds 0 1 2]

``prepare`` brings the central slice of every test series into model space with its nnU-Net
presegmentation and reference labels (``bench/cache/test_slices.npz``; needs SimpleITK and nnU-Net).
``grid`` needs only PyTorch and MONAI, so it also runs on a GPU machine: for every (samples, steps)
and every t_start at the default S and steps it refines those slices with the bundled diffusion model
and reports mean Dice per structure (model space, after the same clean-up as the pipeline), heatmap
AUROC, the network evaluations per slice (S x steps, the cost on any device) and the measured seconds.
Writes ``accuracy_vs_cost.{json,md,png}`` into ``--results``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "SpineSegDiff"), str(REPO)]
CACHE = REPO / "bench" / "cache" / "test_slices.npz"


def prepare(data: Path, splits_file: Path, destination: Path) -> None:
    """Central test slices in model space: ``image``, ``presegmentation``, ``truth`` each ``(C, 320, 320)``."""
    import torch

    from SpineSegDiffLib.inference.preprocess import labels_to_model_space, to_model_space
    from SpineSegDiffLib.inference.presegment import NnUNetPresegmenter
    from SpineSegDiffLib.modelset.folder import DEFAULT_MODELS_DIR, DEFAULT_PRESEGMENTER, open_model_folder
    from SpineSegDiffTraining.datasets import load_dataset
    from SpineSegDiffTraining.splits import Splits

    cases = {c.case_id: c for c in load_dataset(data)}
    test = Splits.load(splits_file).test
    presegmenter = NnUNetPresegmenter(open_model_folder(DEFAULT_MODELS_DIR / DEFAULT_PRESEGMENTER, "nnunet"),
                                      torch.device("cpu"))
    arrays: dict[str, list[np.ndarray]] = {"image": [], "presegmentation": [], "preseg_uncertainty": [], "truth": []}
    for number, case_id in enumerate(test):
        image, truth = cases[case_id].read()
        if number == 0:  # one whole volume for the device benchmark of the volumetric modes
            volume, _ = to_model_space(image, "all")
            np.savez_compressed(destination.with_name("test_volume.npz"), case_id=case_id, image=volume,
                                presegmentation=presegmenter(volume))
        slices, geometry = to_model_space(image, "central")
        arrays["image"].append(slices[0].astype(np.float32))
        labels, entropy = presegmenter.predict(slices)
        arrays["presegmentation"].append(labels[0])
        arrays["preseg_uncertainty"].append(entropy[0])
        arrays["truth"].append(labels_to_model_space(truth, geometry)[0])
    destination.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(destination, case_ids=np.array(test), **{k: np.stack(v) for k, v in arrays.items()})
    print(f"wrote {destination} ({len(test)} test slices)")


def settings(samples: list[int], steps: list[int], t_starts: list[int], default_t_start: int,
             etas: list[float] = ()) -> dict[str, dict]:
    grid = {"nnU-Net only": {}}
    for s in samples:
        for n in steps:
            grid[f"S={s}, steps={n}"] = {"samples": s, "steps": n, "t_start": default_t_start}
    for t in t_starts:
        grid[f"S=15, steps=5, t_start={t}"] = {"samples": 15, "steps": 5, "t_start": t}
    for t in sorted({default_t_start, *t_starts}):
        for eta in etas:
            grid[f"S=15, steps=5, t_start={t}, eta={eta}"] = {"samples": 15, "steps": 5, "t_start": t, "eta": eta}
    return grid


def run_grid(args) -> dict:
    import torch

    from SpineSegDiffLib.inference.postprocess import remove_small_components
    from SpineSegDiffLib.inference.refiner import DiffusionRefiner, refine_slices
    from SpineSegDiffLib.inference.sampling import SamplingOptions
    from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_MODELS_DIR, open_model_folder
    from SpineSegDiffLib.options import resolve_device
    data = np.load(args.slices)
    device = resolve_device(args.device)
    refiner = DiffusionRefiner(open_model_folder(DEFAULT_MODELS_DIR / DEFAULT_DIFFUSION, "diffusion"), device)
    batch = None if device.type != "cpu" else 5
    rows = {}
    grid = settings(args.samples, args.steps, args.t_starts, refiner.settings.t_start, args.etas)
    base = data.get("preseg_uncertainty", None)
    for name, setting in grid.items():
        runs, seconds = [], []
        for seed in args.seeds if setting else [0]:
            options = SamplingOptions(**setting, fused_steps=setting["steps"], seed=seed,
                                      sample_batch=batch or setting["samples"], bfloat16=args.bfloat16) \
                if setting else None
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            # the diffusion entropy alone; the pipeline's blend with the presegmenter's entropy is scored below
            p, u, _ = refine_slices(refiner if setting else None, data["image"], data["presegmentation"], options)
            u = base if not setting and base is not None else u
            seconds.append((time.perf_counter() - start) / len(data["image"]))
            labels = remove_small_components(p.argmax(axis=1).astype(np.uint8))
            runs.append([with_combined_heatmaps(labels[i], data["truth"][i], u[i], None if base is None else base[i])
                         for i in range(len(labels))])
        rows[name] = summarise(runs, setting, float(np.median(seconds)))
        print(f"{name}: mean Dice {rows[name]['mean_dice']:.4f} +- {rows[name]['mean_dice_seed_sd']:.4f}, "
              f"AUROC {rows[name]['auroc']:.3f}, {rows[name]['seconds']:.3f} s/slice", flush=True)
    return {"device": torch.cuda.get_device_name() if device.type == "cuda" else str(device),
            "torch": torch.__version__, "cases": [str(c) for c in data["case_ids"]], "rows": rows}


def with_combined_heatmaps(labels: np.ndarray, truth: np.ndarray, heat: np.ndarray, base: np.ndarray | None) -> dict:
    """Scores of the heatmap, plus the near-spine AUROC of its maximum and mean with the presegmenter's
    entropy ``base`` (``(H, W)`` each)."""
    from SpineSegDiffTraining.metrics import label_scores

    scores = label_scores(labels, truth, heat)
    for name, combine in (("max", np.maximum), ("mean", lambda a, b: (a + b) / 2)):
        scores[f"auroc_near_spine_{name}"] = (float("nan") if base is None else
                                              label_scores(labels, truth, combine(heat, base))["auroc_near_spine"])
    return scores


def summarise(runs: list[list[dict]], setting: dict, seconds: float) -> dict:
    """Mean over cases, then mean (and SD of the mean Dice) over seeds."""
    per_seed = [{"dice": {k: float(np.mean([c["dice"][k] for c in run])) for k in run[0]["dice"]},
                 "mean_dice": float(np.mean([c["mean_dice"] for c in run])),
                 "auroc": float(np.nanmean([c["auroc"] for c in run])),
                 **{key: float(np.nanmean([c[key] for c in run])) for key in
                    ("auroc_near_spine", "auroc_near_spine_max", "auroc_near_spine_mean")}} for run in runs]
    return {
        "dice": {k: float(np.mean([r["dice"][k] for r in per_seed])) for k in per_seed[0]["dice"]},
        "mean_dice": float(np.mean([r["mean_dice"] for r in per_seed])),
        "mean_dice_seed_sd": float(np.std([r["mean_dice"] for r in per_seed])),
        "auroc": float(np.mean([r["auroc"] for r in per_seed])),
        **{key: float(np.mean([r[key] for r in per_seed])) for key in
           ("auroc_near_spine", "auroc_near_spine_max", "auroc_near_spine_mean")},
        "evaluations": setting.get("samples", 0) * setting.get("steps", 0),
        "seconds": seconds, **setting,
    }


def write(result: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accuracy_vs_cost.json").write_text(json.dumps(result, indent=2))
    rows = result["rows"]
    lines = [f"Device: {result['device']}; {len(result['cases'])} held-out central slices; model-space Dice.", "",
             "| setting | SC | VB | IVD | mean Dice (SD over seeds) | heatmap AUROC | AUROC near spine | near spine, "
             "max / mean with nnU-Net entropy (mean = the pipeline's heatmap) | S x steps | s/slice |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['dice']['SC']:.3f} | {r['dice']['VB']:.3f} | {r['dice']['IVD']:.3f} | "
                     f"{r['mean_dice']:.4f} ({r['mean_dice_seed_sd']:.4f}) | {r['auroc']:.3f} | "
                     f"{r['auroc_near_spine']:.3f} | {r['auroc_near_spine_max']:.3f} / "
                     f"{r['auroc_near_spine_mean']:.3f} | {r['evaluations']} | "
                     f"{r['seconds']:.3f} |")
    (folder / "accuracy_vs_cost.md").write_text("\n".join(lines) + "\n")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for s in sorted({r["samples"] for r in rows.values() if "samples" in r and "t_start=" not in str(r)}):
        line = sorted((r["evaluations"], r["mean_dice"], r["auroc"]) for n, r in rows.items()
                      if r.get("samples") == s and "t_start=" not in n)
        left.plot([x[0] for x in line], [x[1] for x in line], "o-", label=f"S={s}")
        right.plot([x[0] for x in line], [x[2] for x in line], "o-", label=f"S={s}")
    left.axhline(rows["nnU-Net only"]["mean_dice"], color="grey", linestyle="--", label="nnU-Net only")
    for axis, label in ((left, "mean Dice (central slice)"), (right, "heatmap AUROC")):
        axis.set_xscale("log")
        axis.set_xlabel("network evaluations per slice (S x steps)")
        axis.set_ylabel(label)
    left.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "accuracy_vs_cost.png", dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--data", type=Path, required=True)
    prep.add_argument("--splits", type=Path, required=True)
    prep.add_argument("--slices", type=Path, default=CACHE)
    grid = sub.add_parser("grid")
    grid.add_argument("--slices", type=Path, default=CACHE)
    grid.add_argument("--device", default="auto")
    grid.add_argument("--samples", type=int, nargs="+", default=[1, 3, 5, 10, 15, 30])
    grid.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 5, 10, 20])
    grid.add_argument("--t-starts", type=int, nargs="+", default=[10, 20, 30, 40])
    grid.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    grid.add_argument("--etas", type=float, nargs="*", default=[0.5, 1.0], help="DDIM eta values (heatmap study)")
    grid.add_argument("--bfloat16", action="store_true")
    grid.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.data, args.splits, args.slices)
    else:
        write(run_grid(args), args.results)


if __name__ == "__main__":
    main()

"""Make the README picture: the bundled sample segmented by the bundled models, segments and heatmap.

Usage::

    python Resources/Scripts/make_screenshot.py [--output Resources/Screenshots/SpineSegDiff.png]
        [--preset fast|standard|paper] [--samples S] [--steps N] [--device auto|cpu|cuda] [--models MODELS_DIR]

It runs the core (no Slicer needed) on ``Resources/Samples/spider_t2_sample/image.nii.gz`` and writes one
PNG with three panels of the processed sagittal slice: the image, the three segments and the level names
over it, and the uncertainty heatmap over it. Without the bundled models (``Resources/Models``) it stops with a message
saying how to get them, and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "SpineSegDiff"))

SAMPLE = REPO / "Resources" / "Samples" / "spider_t2_sample" / "image.nii.gz"
DEFAULT_OUTPUT = REPO / "Resources" / "Screenshots" / "SpineSegDiff.png"


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--preset", choices=("fast", "standard", "paper"), default="standard")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--samples", type=int, help="diffusion samples (default: the preset's)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    parser.add_argument("--models", type=Path, help="folder holding the model folders (default: bundled)")
    return parser.parse_args(argv)


def missing_inputs(models_dir: Path | None) -> list[str]:
    """What is missing to make the picture (empty when everything is there)."""
    from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_MODELS_DIR, DEFAULT_PRESEGMENTER

    root = models_dir or DEFAULT_MODELS_DIR
    missing = [str(root / name) for name in (DEFAULT_PRESEGMENTER, DEFAULT_DIFFUSION) if not (root / name).is_dir()]
    return missing + ([str(SAMPLE)] if not SAMPLE.is_file() else [])


def render(result, path: Path) -> None:
    """Three panels of the middle processed slice (model space: superior up, anterior left)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    from SpineSegDiffLib.labels import STRUCTURES
    from SpineSegDiffLib.outputs.preview import label_colormap, level_name_positions

    k = len(result.model_image) // 2
    image, labels, heat = result.model_image[k], result.model_labels[k], result.model_uncertainty[k]
    rows, columns = np.nonzero(image > 0)
    if not rows.size:
        rows, columns = np.array([0, image.shape[0] - 1]), np.array([0, image.shape[1] - 1])
    crop = (slice(rows.min(), rows.max() + 1), slice(columns.min(), columns.max() + 1))
    figure, axes = plt.subplots(1, 3, figsize=(10.5, 4.6), dpi=120)
    titles = ("T2 sagittal slice", "Segments", "Uncertainty (bright: check here)")
    for ax, title in zip(axes, titles, strict=True):
        ax.imshow(image[crop], cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    axes[1].imshow(labels[crop], cmap=label_colormap(), vmin=0, vmax=len(STRUCTURES), interpolation="nearest")
    names = level_name_positions(result.levels, result.model_level_labels[k])
    for name, row, column, kind in names:
        axes[1].text(column - crop[1].start - 3, row - crop[0].start, name, ha="right", va="center", fontsize=6,
                     color="white" if kind == "vertebra" else "palegreen")
    axes[1].legend(handles=[Patch(color=s.color, label=s.name) for s in STRUCTURES], loc="lower left", fontsize=7)
    shown = axes[2].imshow(np.ma.masked_less(heat[crop], 0.05), cmap="inferno", vmin=0, vmax=1, alpha=0.85)
    figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02)
    figure.suptitle(f"SpineSegDiff on SPIDER series 005 (held-out test case), slice {result.slice_indices[k]}",
                    fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    missing = missing_inputs(args.models)
    if missing:
        print("Cannot make the screenshot, missing:\n  " + "\n  ".join(missing)
              + "\nTrain or download the models into Resources/Models first (see the README), or pass --models.")
        return 1
    from SpineSegDiffLib.errors import SpineSegDiffError
    from SpineSegDiffLib.inference.pipeline import Segmenter
    from SpineSegDiffLib.io import read_volume
    from SpineSegDiffLib.options import SegmentOptions

    options = SegmentOptions(preset=args.preset, device=args.device, samples=args.samples, steps=args.steps)
    try:
        result = Segmenter(args.models, args.device).segment(read_volume(SAMPLE), options)
    except SpineSegDiffError as error:
        print(f"error: {error}")
        return 1
    render(result, args.output)
    print(f"wrote {args.output} ({result.timings.get('total', 0):.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

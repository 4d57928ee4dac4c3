"""``spinesegdiff``: segment lumbar spine MRI from the command line.

    spinesegdiff segment INPUT [INPUT ...] -o OUT_DIR [--preset fast|standard|paper] [--mode central|slices|volume]
    spinesegdiff info

INPUT is an image file (NIfTI, NRRD, MHA/MHD), a DICOM series folder, or a folder of image files.
A run over many inputs continues past a failing case, writes OUT_DIR/summary.json, and a re-run
skips the cases already finished (``--overwrite`` redoes them).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from .errors import SpineSegDiffError
from .io import is_image_file
from .options import DEVICES, MODES, PRESETS, SegmentOptions, resolve_device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spinesegdiff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser("segment", help="segment one or more volumes")
    seg.add_argument("inputs", nargs="+", type=Path)
    seg.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    seg.add_argument("--mode", choices=MODES, default="central",
                     help="central sagittal slice (the paper), the 2D model on every slice, or the 3D model")
    seg.add_argument("--preset", choices=tuple(PRESETS), default="standard",
                     help="central: S x steps = 5x2 / 15x5 / 15x10; slices and volume: 3x2 / 5x2 / 15x5")
    seg.add_argument("--samples", type=int, help="S, diffusion samples (preset default)")
    seg.add_argument("--steps", type=int, help="denoising steps (preset default)")
    seg.add_argument("--fused-steps", type=int, help="Ts, last steps fused (preset default)")
    seg.add_argument("--t-start", type=int, help="timestep the presegmentation is noised to")
    seg.add_argument("--seed", type=int, default=0)
    seg.add_argument("--device", choices=DEVICES, default="auto")
    seg.add_argument("--bfloat16", action="store_true", help="bfloat16 autocast (GPUs; slower on most CPUs)")
    seg.add_argument("--slice-index", type=int, help="process this sagittal index instead of the central one")
    seg.add_argument("--no-refine", action="store_true", help="nnU-Net presegmentation only")
    seg.add_argument("--series", help="DICOM series UID when a folder holds several")
    seg.add_argument("--models", type=Path, help="folder holding the model folders (default: bundled)")
    seg.add_argument("--overwrite", action="store_true", help="replace existing results")
    seg.add_argument("--quiet", action="store_true", help="no progress bar")
    info = sub.add_parser("info", help="list the models found and the device")
    info.add_argument("--models", type=Path)
    info.add_argument("--device", choices=DEVICES, default="auto")
    return parser


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files stay; a folder of image files becomes its files; a DICOM folder stays one input."""
    cases: list[Path] = []
    for path in inputs:
        files = sorted(p for p in path.iterdir() if is_image_file(p)) if path.is_dir() else []
        cases.extend(files or [path])  # a folder without image files is read as a DICOM series
    return cases


def options_from(args: argparse.Namespace) -> SegmentOptions:
    return SegmentOptions(
        mode=args.mode, preset=args.preset, samples=args.samples, steps=args.steps, fused_steps=args.fused_steps,
        t_start=args.t_start, seed=args.seed, device=args.device, refine=not args.no_refine,
        slice_index=args.slice_index, bfloat16=args.bfloat16,
    )


def run_segment(args: argparse.Namespace) -> int:
    from .batch import run_batch

    options = options_from(args)
    cases = expand_inputs(args.inputs)
    summary = run_batch(cases, args.output, options, args.models, args.overwrite, args.series,
                        show_progress=not args.quiet)
    failed = [c for c in summary["cases"] if c["status"] == "failed"]
    for case in failed:
        print(f"error: {case['input']}: {case['reason']}", file=sys.stderr)
    return 1 if failed else 0


def run_info(args: argparse.Namespace) -> int:
    import torch

    from .models import DEFAULT_MODELS_DIR, find_models

    root = args.models or DEFAULT_MODELS_DIR
    print(f"device: {resolve_device(args.device)} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"models in {root}:")
    for model in find_models(root):
        metrics = model.config.get("metrics", {}).get("summary", "")
        print(f"  {model.path.name}: {model.kind}, id {model.model_id} {metrics}".rstrip())
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Ctrl-C and a scheduler's SIGTERM both stop cleanly, also when started as a background job
    # (which inherits SIGINT ignored): staged files are removed, finished cases are kept.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
    started = time.time()
    try:
        code = run_segment(args) if args.command == "segment" else run_info(args)
    except SpineSegDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished cases are kept, no partial files were left", file=sys.stderr)
        return 130
    if args.command == "segment" and not args.quiet:
        print(f"finished in {time.time() - started:.1f} s; outputs in {args.output}")
    return code

if __name__ == "__main__":
    sys.exit(main())

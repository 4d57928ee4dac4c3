"""``spinesegdiff``: segment lumbar spine MRI from the command line.

    spinesegdiff segment INPUT [INPUT ...] -o OUT_DIR [--preset fast|standard|paper] [--mode central|slices|volume]
    spinesegdiff info

INPUT is an image file (NIfTI, NRRD, MHA/MHD), a DICOM series folder, or a folder of image files.
A run over many inputs continues past a failing case, writes OUT_DIR/summary.json, and a re-run
skips the cases already finished (``--overwrite`` redoes them).

Every input is checked from its header before any voxel is read; one larger than 512M voxels or 2 GB of voxel
data is refused unless --max-voxels / --max-bytes raise the limit. The output folder is checked (not a file,
writable, enough free space) before any model loads.

Exit status: 0 every case done or skipped; 1 a case failed, or a bad option; 2 the output folder cannot be
used (a file, not writable, read-only, full), or a command-line usage error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import OutputFolderError, SpineSegDiffError
from ..header import InputLimits, parse_amount
from ..options import DEVICE_CHOICES, DEVICES, MODE_CHOICES, MODES, PRESET_HELP, PRESET_NAMES, SegmentOptions

EXIT_FAILED, EXIT_OUTPUT_FOLDER, EXIT_INTERRUPTED = 1, 2, 130


def _choices_help(choices) -> str:
    return "; ".join(f"{c.key}: {c.description}" for c in choices)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spinesegdiff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser("segment", help="segment one or more volumes")
    seg.add_argument("inputs", nargs="+", type=Path)
    seg.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    seg.add_argument("--mode", choices=MODES, default="central", help=_choices_help(MODE_CHOICES))
    seg.add_argument("--preset", choices=PRESET_NAMES, default="standard", help=PRESET_HELP)
    seg.add_argument("--samples", type=int, help="S, diffusion samples (preset default)")
    seg.add_argument("--steps", type=int, help="denoising steps (preset default)")
    seg.add_argument("--fused-steps", type=int, help="Ts, last steps fused (preset default)")
    seg.add_argument("--t-start", type=int, help="timestep the presegmentation is noised to (model default)")
    seg.add_argument("--seed", type=int, default=0)
    seg.add_argument("--device", choices=DEVICES, default="auto", help=_choices_help(DEVICE_CHOICES))
    seg.add_argument("--bfloat16", action="store_true", help="bfloat16 autocast (GPUs; slower on most CPUs)")
    seg.add_argument("--slice-index", type=int, help="process this sagittal index instead of the central one")
    seg.add_argument("--no-refine", action="store_true", help="nnU-Net presegmentation only")
    seg.add_argument("--series", help="DICOM series UID when a folder holds several")
    seg.add_argument("--models", type=Path, help="folder holding the model folders (default: bundled)")
    seg.add_argument("--overwrite", action="store_true", help="replace existing results")
    seg.add_argument("--max-voxels", metavar="N", help="largest input accepted, in voxels (default 512M; K, M, G: "
                     "powers of 1024); raise it only when this machine has the memory")
    seg.add_argument("--max-bytes", metavar="SIZE", help="largest input voxel data, decompressed (default 2G)")
    seg.add_argument("--quiet", action="store_true", help="no progress bar")
    where = seg.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="run the cases on a local Dask cluster of N "
                       "processes, each loading the models once (needs the cluster extra)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run the cases on the running Dask cluster at "
                       "ADDRESS (e.g. tcp://host:8786); its workers must see the inputs, models and output folder")
    info = sub.add_parser("info", help="list the models found and the device")
    info.add_argument("--models", type=Path)
    info.add_argument("--device", choices=DEVICES, default="auto")
    return parser


def options_from(args: argparse.Namespace) -> SegmentOptions:
    """The validated options of ``segment`` (raises :class:`SpineSegDiffError` for a bad value)."""
    return SegmentOptions(
        mode=args.mode, preset=args.preset, samples=args.samples, steps=args.steps, fused_steps=args.fused_steps,
        t_start=args.t_start, seed=args.seed, device=args.device, refine=not args.no_refine,
        slice_index=args.slice_index, bfloat16=args.bfloat16,
    )


def limits_from(args: argparse.Namespace) -> InputLimits:
    """The input size limits of ``segment`` (raises :class:`SpineSegDiffError` for a bad value)."""
    given = {"max_voxels": args.max_voxels, "max_bytes": args.max_bytes}
    return InputLimits(**{name: parse_amount(value, "--" + name.replace("_", "-"))
                          for name, value in given.items() if value is not None})


def run_segment(args: argparse.Namespace) -> int:
    from .batch import summary_line
    from .cases import run_batch

    started = time.perf_counter()
    options = options_from(args)
    limits = limits_from(args)

    def log(line: str) -> None:
        if line.startswith(("error:", "warning:")):
            print(line, file=sys.stderr, flush=True)
        elif not args.quiet:
            print(line, flush=True)

    if args.workers is not None or args.scheduler:
        from .cluster import run_on_cluster

        if args.workers is not None and args.workers < 1:
            raise SpineSegDiffError(f"--workers must be at least 1, got {args.workers}", "use --workers 2 or more")
        summary = run_on_cluster(args.inputs, args.output, options, args.models, args.overwrite, args.series,
                                 workers=args.workers, scheduler=args.scheduler, show_progress=not args.quiet,
                                 log=log, limits=limits)
    else:
        summary = run_batch(args.inputs, args.output, options, args.models, args.overwrite, args.series,
                            show_progress=not args.quiet, log=log, limits=limits)
    failed = any(c["status"] == "failed" for c in summary["cases"])
    line = f"{summary_line(summary, args.output)} ({time.perf_counter() - started:.1f} s)"
    print(line, file=sys.stderr if failed else sys.stdout)
    return EXIT_FAILED if failed else 0


def run_info(args: argparse.Namespace) -> int:
    import torch

    from ..modelset.folder import PACKAGED_MODELS_DIR, RESOURCES_MODELS_DIR, find_models, models_root
    from ..options import resolve_device

    root = models_root(args.models)
    where = {PACKAGED_MODELS_DIR: "installed with the package",
             RESOURCES_MODELS_DIR: "source checkout or Slicer extension"}
    origin = "given with --models" if args.models else where.get(root, "")
    print(f"device: {resolve_device(args.device)} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"models: {root} ({origin})")
    for model in find_models(root):
        metrics = model.config.get("metrics", {}).get("summary", "")
        print(f"  {model.path.name}: {model.kind}, id {model.model_id} {metrics}".rstrip())
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stop_on_signals():
    """Ctrl-C and a scheduler's SIGTERM both stop cleanly, also when started as a background job
    (which inherits SIGINT ignored); the previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _stop_on_signals():
            return run_segment(args) if args.command == "segment" else run_info(args)
    except OutputFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_OUTPUT_FOLDER
    except SpineSegDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: finished cases are kept, no partial files were left", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

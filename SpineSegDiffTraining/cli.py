"""``spinesegdiff-train``: retrain the presegmentation (nnU-Net v2) and the diffusion model.

    spinesegdiff-train all --data DATA --work WORK --out Resources/Models
    spinesegdiff-train export-bank --data DATA --work WORK --bank BANK   (then bank_run on any device)
    spinesegdiff-train STAGE ...   (one stage: nnunet, diffusion, diffusion3d, bundle, evaluate,
                                    evaluate-volumes, evaluate-thick, grading)

Every stage resumes from ``WORK``; the split (``WORK/splits.json``) is made once and reused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from SpineSegDiffLib.errors import SpineSegDiffError

from .workspace import Workspace


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spinesegdiff-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True)
    for name in ("prepare", "export-bank", "nnunet", "diffusion", "diffusion3d", "bundle", "evaluate",
                 "evaluate-volumes", "evaluate-thick", "grading", "all"):
        stage = sub.add_parser(name)
        stage.add_argument("--data", type=Path, required=True, help="SPIDER root or folder of <case>/image+mask")
        stage.add_argument("--work", type=Path, required=True, help="work folder (resumable)")
        stage.add_argument("--folds", type=int, default=5, help="K of the patient-wise K-fold split")
        stage.add_argument("--nnunet-trainer", choices=("cpu", "smoke"), default="cpu")
        stage.add_argument("--nnunet-folds", type=int, nargs="*", help="train only these folds")
        stage.add_argument("--iterations", type=int, default=3000, help="diffusion training iterations")
        stage.add_argument("--minutes", type=float, help="stop diffusion training after this long (resumable)")
        stage.add_argument("--features", type=int, nargs=6,
                           help="diffusion network widths (default 16 16 32 64 128 16 in 2D, 8 8 16 32 64 8 in 3D)")
        stage.add_argument("--patch-size", type=int, nargs=3, default=(16, 128, 128),
                           help="3D training patch: slices, rows, columns")
        stage.add_argument("--roi-size", type=int, nargs=3,
                           help="3D sliding-window size at inference (default: the training patch)")
        stage.add_argument("--volume-t-start", type=int,
                           help="default t_start of the bundled 3D model (default: its training t_start)")
        stage.add_argument("--eval-steps", type=int, nargs="+", default=(1, 2, 5, 10),
                           help="denoising steps compared in the evaluation (Table 2)")
        stage.add_argument("--out", type=Path, default=Path("Resources/Models"), help="model folders go here")
        stage.add_argument("--device", default="cpu")
        stage.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")
        stage.add_argument("--bank", type=Path, help="export-bank: the bank folder to write (see bank_run)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workspace = Workspace(args.work)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from .nnunet import use_work_dir

    use_work_dir(workspace.nnunet)
    from . import stages
    from .grading import run_grading

    try:
        run_grading(workspace, args) if args.stage == "grading" else stages.run(args.stage, workspace, args)
    except SpineSegDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

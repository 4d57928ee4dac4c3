"""Segment many volumes with the SpineSegDiff Slicer Logic, without a window.

Usage::

    Slicer --no-main-window --python-script Resources/Scripts/batch_segment_slicer.py -- \\
        --input FOLDER_OR_SCENE --output OUT [--preset fast|standard|paper] [--mode central|slices|volume] \\
        [--device auto|cpu|cuda] [--samples S] [--steps N] [--seed K] [--models MODELS_DIR] [--overwrite]

``--input`` is a folder of image files (NIfTI, NRRD, MHA/MHD) or a Slicer scene (``.mrb`` or ``.mrml``:
every scalar volume in it is segmented). For each volume ``NAME`` it writes ``OUT/NAME.seg.nrrd`` (the
three segments with names, colours and terminology) and ``OUT/NAME_uncertainty.nrrd`` (the heatmap on the
input grid), then ``OUT/summary.json`` listing every case as ``done``, ``skipped`` (results already there;
``--overwrite`` redoes them) or ``failed`` with the reason. A failing case does not stop the others.

Exit status: 0 when every case is done or skipped, 1 when at least one failed, 2 on bad arguments or
when the models cannot be loaded. ``PythonSlicer`` has no MRML scene: use ``Slicer --no-main-window``.
For batch work without Slicer, the ``spinesegdiff segment`` command line does the same from the core.
"""

import argparse
import json
import sys
import traceback
from pathlib import Path

import slicer

MODULE_DIR = Path(__file__).resolve().parents[2] / "SpineSegDiff"
if (MODULE_DIR / "SpineSegDiff.py").is_file() and str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # running from the source tree rather than an installed extension

from SpineSegDiff import SpineSegDiffLogic  # noqa: E402
from SpineSegDiffLib import logic as core  # noqa: E402
from SpineSegDiffLib.errors import SpineSegDiffError  # noqa: E402
from SpineSegDiffLib.io import is_image_file, stem_of  # noqa: E402

SCENE_SUFFIXES = (".mrb", ".mrml")


def parse_arguments(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch_segment_slicer.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="folder of volumes, or a .mrb/.mrml scene")
    parser.add_argument("--output", type=Path, required=True, help="output folder")
    parser.add_argument("--preset", choices=("fast", "standard", "paper"), default="standard")
    parser.add_argument("--mode", choices=("central", "slices", "volume"), default="central")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--samples", type=int, default=0, help="diffusion samples (0: the preset's)")
    parser.add_argument("--steps", type=int, default=0, help="denoising steps (0: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", type=Path, help="folder holding the model folders (default: bundled)")
    parser.add_argument("--overwrite", action="store_true", help="redo cases whose results exist")
    return parser.parse_args(argv[1:] if argv and argv[0] == "--" else argv)


def list_cases(source: Path) -> list:
    """What to segment: the image files of a folder (loaded one at a time), or every scalar volume of a scene."""
    if source.is_file() and source.name.lower().endswith(SCENE_SUFFIXES):
        slicer.util.loadScene(str(source))
        return [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                if not node.IsA("vtkMRMLLabelMapVolumeNode") and not node.GetAttribute(core.ROLE_ATTRIBUTE)]
    if not source.is_dir():
        raise SpineSegDiffError(f"{source} is neither a folder nor a .mrb/.mrml scene", "check --input")
    return [path for path in sorted(source.iterdir()) if is_image_file(path)]


def print_progress(name: str):
    """A progress callback printing each new stage once."""
    seen = set()

    def progress(stage: str, fraction: float) -> None:
        if stage not in seen:
            seen.add(stage)
            print(f"  {name}: {stage}", flush=True)

    return progress


def unique_stem(name: str, used: set) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "volume"
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate)
    return candidate


def segment_one(logic, volume, stem: str, args) -> dict:
    """Segment one volume and save its results; the result nodes are removed from the scene afterwards."""
    paths = {"segmentation": args.output / f"{stem}.seg.nrrd", "uncertainty": args.output / f"{stem}_uncertainty.nrrd"}
    if all(p.is_file() for p in paths.values()) and not args.overwrite:
        return {"status": "skipped", "reason": "results already exist (use --overwrite to redo)"}
    options = core.make_options(args.mode, args.preset, args.device, args.samples, args.steps, args.seed)
    nodes = logic.process(volume, options, print_progress(stem), closedSurface=False)
    try:
        written = core.save_result_nodes(nodes, args.output, stem)
    finally:
        for node in (nodes.segmentation, nodes.heatmap):
            slicer.mrmlScene.RemoveNode(node)
    return {"status": "done", **{key: str(path) for key, path in written.items()}}


def run_case(logic, case, used: set, args) -> dict:
    """Load (for files), segment and save one case; any failure becomes a ``failed`` entry."""
    name = stem_of(case) if isinstance(case, Path) else case.GetName()
    stem = unique_stem(name, used)
    print(f"{stem}:", flush=True)
    volume = None
    try:
        volume = slicer.util.loadVolume(str(case)) if isinstance(case, Path) else case
        entry = segment_one(logic, volume, stem, args)
    except SpineSegDiffError as error:
        entry = {"status": "failed", "reason": str(error)}
    except Exception as error:  # one broken case must not stop the batch
        entry = {"status": "failed", "reason": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    finally:
        if isinstance(case, Path) and volume is not None:
            slicer.mrmlScene.RemoveNode(volume)
    print(f"  {entry['status']}" + (f": {entry['reason']}" if "reason" in entry else ""), flush=True)
    return {"input": str(case) if isinstance(case, Path) else name, "stem": stem, **entry}


def run(args) -> int:
    """Segment every case; returns the exit status."""
    missing = core.missing_requirements()
    if missing:
        print("Missing Python packages: " + ", ".join(missing) + " (open the SpineSegDiff module once to install them)")
        return 2
    cases = list_cases(args.input)
    logic = SpineSegDiffLogic(modelsDir=args.models)
    logic.loadModels(args.device)
    args.output.mkdir(parents=True, exist_ok=True)
    summary, used = {"input": str(args.input), "cases": []}, set()
    for case in cases:
        summary["cases"].append(run_case(logic, case, used, args))
        (args.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed = sum(case["status"] == "failed" for case in summary["cases"])
    print(f"{len(cases)} volumes, {failed} failed; summary in {args.output / 'summary.json'}")
    return 1 if failed else 0


def main() -> int:
    try:
        args = parse_arguments(sys.argv[1:])
    except SystemExit as exit_request:  # --help (0) or bad arguments (2)
        return 0 if not exit_request.code else 2
    try:
        return run(args)
    except SpineSegDiffError as error:
        print(f"error: {error}")
        return 2


if __name__ == "__main__":
    slicer.util.exit(main())

"""Segment many volumes with the SpineSegDiff Slicer Logic, without a window.

Usage::

    Slicer --no-main-window --python-script Resources/Scripts/batch_segment_slicer.py -- \\
        --input FOLDER_OR_SCENE --output OUT [--preset fast|standard|paper] [--mode central|slices|volume] \\
        [--device auto|cpu|cuda] [--samples S] [--steps N] [--seed K] [--models MODELS_DIR] [--overwrite]

``--input`` is a folder of image files (NIfTI, NRRD, MHA/MHD), an image file, a DICOM folder, or a Slicer
scene (``.mrb`` or ``.mrml``: every scalar volume in it is segmented). Every case is written exactly as
``spinesegdiff segment`` writes it (the core's one writer and naming rule: ``NAME_labels.nii.gz``,
``NAME_uncertainty.nii.gz``, ``NAME.seg.nrrd``, levels, report, preview; a case is finished when its report
exists), then ``OUT/summary.json`` lists every case as ``done``, ``skipped`` (results already there;
``--overwrite`` redoes them) or ``failed`` with the reason. Files are planned and read by the core exactly
as the command line does; scene volumes are taken from MRML. It runs on the core's batch engine: options
and inputs are checked before the models load, and a failing case, whatever the error, does not stop the
others.

Exit status: 0 when every case is done or skipped, 1 when at least one failed (the last line says so),
2 on bad arguments or options, or when the models cannot be loaded. ``PythonSlicer`` has no MRML scene:
use ``Slicer --no-main-window``.
For batch work without Slicer, the ``spinesegdiff segment`` command line does the same from the core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import slicer

MODULE_DIR = Path(__file__).resolve().parents[2] / "SpineSegDiff"
if (MODULE_DIR / "SpineSegDiff.py").is_file() and str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # running from the source tree rather than an installed extension

from SpineSegDiffLib.errors import SpineSegDiffError  # noqa: E402
from SpineSegDiffLib.options import DEVICES, MODES, PRESET_NAMES  # noqa: E402
from SpineSegDiffSlicer import install, roles  # noqa: E402
from SpineSegDiffSlicer import logic as core  # noqa: E402

SCENE_SUFFIXES = (".mrb", ".mrml")


def parse_arguments(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch_segment_slicer.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True,
                        help="folder of volumes, an image file, a DICOM folder, or a .mrb/.mrml scene")
    parser.add_argument("--output", type=Path, required=True, help="output folder")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="standard")
    parser.add_argument("--mode", choices=MODES, default="central")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--samples", type=int, default=0, help="diffusion samples (0: the preset's)")
    parser.add_argument("--steps", type=int, default=0, help="denoising steps (0: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", type=Path, help="folder holding the model folders (default: bundled)")
    parser.add_argument("--overwrite", action="store_true", help="redo cases whose results exist")
    return parser.parse_args(argv[1:] if argv and argv[0] == "--" else argv)


def is_scene(source: Path) -> bool:
    return source.is_file() and source.name.lower().endswith(SCENE_SUFFIXES)


def scene_volumes(scene_file: Path) -> list:
    """Every scalar volume of a scene (labelmaps and SpineSegDiff's own heatmaps excepted)."""
    slicer.util.loadScene(str(scene_file))
    return [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
            if not node.IsA("vtkMRMLLabelMapVolumeNode") and not roles.is_result(node)]


def node_cases(volumes: list, out_dir: Path, overwrite: bool) -> list:
    """Engine cases for volume nodes, named like files (a taken name fails, as in the command line)."""
    from SpineSegDiffLib.apps.cases import Case
    from SpineSegDiffLib.outputs.writer import is_complete

    planned, seen = [], set()
    for volume in volumes:
        name = volume.GetName()
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "volume"
        entry = {"input": name, "stem": stem}
        if stem in seen:
            planned.append({**entry, "status": "failed", "reason": f"another volume has the name {stem!r}"})
        elif is_complete(out_dir, stem) and not overwrite:
            planned.append({**entry, "status": "skipped", "reason": "results already exist (use --overwrite to redo)"})
        else:
            planned.append(Case(name, stem, volume))
        seen.add(stem)
    return planned


def print_progress(name: str):
    """A progress callback printing each stage when it begins."""
    last = [None]

    def progress(stage: str, fraction: float) -> None:
        if stage != last[0]:
            last[0] = stage
            print(f"  {name}: {stage}", flush=True)

    return progress


def segment_node(options, out_dir: Path, overwrite: bool):
    """The engine's work for one volume node: segment it through the core and write it with the core's writer."""
    from SpineSegDiffLib.outputs.writer import write_case

    def work(case, segmenter) -> dict:
        image = core.image_for_volume_node(case.source)
        result = segmenter.segment(image, options, print_progress(case.stem))
        report = write_case(result, out_dir, case.stem, case.name, overwrite)
        return {"slice_index": report["slice_index"], "seconds": report["timings_s"]["total"]}

    return work


def plan(args, options):
    """The cases and the work for them: the core's file cases and work, or the volumes of a scene."""
    from SpineSegDiffLib.apps.cases import file_cases, segment_file

    if is_scene(args.input):
        return node_cases(scene_volumes(args.input), args.output, args.overwrite), segment_node(
            options, args.output, args.overwrite)
    if not args.input.exists():
        raise SpineSegDiffError(f"{args.input} is neither a folder nor a .mrb/.mrml scene", "check --input")
    work = segment_file(args.output, options, overwrite=args.overwrite, progress=print_progress("case"))
    return file_cases([args.input], args.output, args.overwrite), work


def dependency_problem() -> str | None:
    """Why this Slicer cannot run the batch (too old, packages missing or outdated by version), or None."""
    too_old = install.unsupported_python_message()
    if too_old:
        return too_old
    missing = install.missing_or_outdated()
    if missing:
        return ("Missing or outdated Python packages: " + ", ".join(missing)
                + " (open the SpineSegDiff module and click Segment once to install them)")
    return None


def run(args) -> int:
    """Segment every case; returns the exit status."""
    problem = dependency_problem()
    if problem:
        print(problem)
        return 2
    from SpineSegDiffLib.apps.batch import BatchEngine, summary_line
    from SpineSegDiffLib.modelset.model_set import open_models

    options = core.make_options(args.mode, args.preset, args.device, args.samples, args.steps, args.seed)
    models = open_models(args.models)
    models.check(options)
    cases, work = plan(args, options)
    engine = BatchEngine(models, options, args.output, lambda line: print(line, flush=True))
    summary = engine.run(cases, work)
    print(summary_line(summary, args.output))
    return 1 if any(case["status"] == "failed" for case in summary["cases"]) else 0


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

"""Segment many volumes with the SpineSegDiff Slicer Logic, without a window.

Usage::

    Slicer --no-main-window --python-script Resources/Scripts/batch_segment_slicer.py -- \\
        --input FOLDER_OR_SCENE --output OUT [--preset fast|standard|paper] [--mode central|slices|volume] \\
        [--device auto|cpu|cuda] [--samples S] [--steps N] [--seed K] [--models MODELS_DIR] [--overwrite]

``--input`` is a folder of image files (NIfTI, NRRD, MHA/MHD) or a Slicer scene (``.mrb`` or ``.mrml``:
every scalar volume in it is segmented). For each volume ``NAME`` it writes ``OUT/NAME.seg.nrrd`` (the
three segments with names, colours and terminology) and ``OUT/NAME_uncertainty.nrrd`` (the heatmap on the
input grid), then ``OUT/summary.json`` listing every case as ``done``, ``skipped`` (results already there;
``--overwrite`` redoes them) or ``failed`` with the reason. It runs on the core's batch engine (the one
behind ``spinesegdiff segment``): options and input files are checked before the models load, and a
failing case, whatever the error, does not stop the others.

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
from SpineSegDiffLib.io import check_input, is_image_file, stem_of  # noqa: E402
from SpineSegDiffLib.options import DEVICES, MODES, PRESET_NAMES  # noqa: E402
from SpineSegDiffSlicer import install  # noqa: E402
from SpineSegDiffSlicer import logic as core  # noqa: E402

SCENE_SUFFIXES = (".mrb", ".mrml")


def parse_arguments(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch_segment_slicer.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="folder of volumes, or a .mrb/.mrml scene")
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


def list_sources(source: Path) -> list:
    """What to segment: the image files of a folder (loaded one at a time), or every scalar volume of a scene."""
    if source.is_file() and source.name.lower().endswith(SCENE_SUFFIXES):
        slicer.util.loadScene(str(source))
        return [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                if not node.IsA("vtkMRMLLabelMapVolumeNode") and not node.GetAttribute(core.ROLE_ATTRIBUTE)]
    if not source.is_dir():
        raise SpineSegDiffError(f"{source} is neither a folder nor a .mrb/.mrml scene", "check --input")
    return [path for path in sorted(source.iterdir()) if is_image_file(path)]


def output_paths(out_dir: Path, stem: str) -> dict:
    return {"segmentation": out_dir / f"{stem}.seg.nrrd", "uncertainty": out_dir / f"{stem}_uncertainty.nrrd"}


def unique_stem(name: str, used: set) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "volume"
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate)
    return candidate


def plan_cases(sources: list, args) -> list:
    """Engine cases, plus entries decided before any model loads (results there, unreadable file)."""
    from SpineSegDiffLib.apps.batch import Case

    planned, used = [], set()
    for source in sources:
        name = str(source) if isinstance(source, Path) else source.GetName()
        stem = unique_stem(stem_of(source) if isinstance(source, Path) else name, used)
        entry = {"input": name, "stem": stem}
        if all(p.is_file() for p in output_paths(args.output, stem).values()) and not args.overwrite:
            planned.append({**entry, "status": "skipped", "reason": "results already exist (use --overwrite to redo)"})
            continue
        try:
            if isinstance(source, Path):
                check_input(source)
            planned.append(Case(name, stem, source))
        except SpineSegDiffError as error:
            planned.append({**entry, "status": "failed", "reason": str(error)})
    return planned


def print_progress(name: str):
    """A progress callback printing each new stage once."""
    seen = set()

    def progress(stage: str, fraction: float) -> None:
        if stage not in seen:
            seen.add(stage)
            print(f"  {name}: {stage}", flush=True)

    return progress


def segment_volume_node(volume, segmenter, options, progress):
    """One volume node through the core, in this process (a batch script has no GUI to keep responsive)."""
    result = segmenter.segment(core.image_for_volume_node(volume), options, progress)
    return core.add_result_nodes(slicer.mrmlScene, volume, result.labels, result.uncertainty, closed_surface=False)


def segment_case(options, out_dir: Path):
    """The engine's work for one case: load (files), segment into MRML nodes, save, remove the nodes."""

    def work(case, segmenter) -> dict:
        loaded = isinstance(case.source, Path)
        volume = slicer.util.loadVolume(str(case.source)) if loaded else case.source
        try:
            nodes = segment_volume_node(volume, segmenter, options, print_progress(case.stem))
            try:
                written = core.save_result_nodes(nodes, out_dir, case.stem)
            finally:
                for node in (nodes.segmentation, nodes.heatmap):
                    slicer.mrmlScene.RemoveNode(node)
        finally:
            if loaded:
                slicer.mrmlScene.RemoveNode(volume)
        return {key: str(path) for key, path in written.items()}

    return work


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
    cases = plan_cases(list_sources(args.input), args)
    engine = BatchEngine(models, options, args.output, lambda line: print(line, flush=True))
    summary = engine.run(cases, segment_case(options, args.output))
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

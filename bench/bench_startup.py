"""Start-up cost of a single-case run: whole process against the pipeline's own time (not a test).

    python bench/bench_startup.py [--repeat 3] [--source SpineSegDiff] [--name startup]

Runs ``python -m SpineSegDiffLib.apps.cli segment SAMPLE`` under ``/usr/bin/time`` for each configuration
(``--repeat`` times, median) and compares the process's wall time with the segmentation time the run
itself reports (``timings_s.total``: preprocessing to postprocessing, without loading or writing). Also
times importing what a run imports. ``--source`` points at another checkout's ``SpineSegDiff`` folder
to measure an older version the same way. Writes ``bench/results/<name>.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "Samples" / "spider_t2_sample" / "image.nii.gz"
CONFIGS = {
    "default (standard)": [],
    "fast preset": ["--preset", "fast"],
    "presegmentation only": ["--no-refine"],
}
IMPORTS = ("import SpineSegDiffLib.apps.cli, SpineSegDiffLib.apps.batch, SpineSegDiffLib.inference.pipeline, "
           "SpineSegDiffLib.outputs.writer")
HEAVY_IMPORTS = (
    ("PyTorch", "import torch"),
    ("nnU-Net's predictor (after PyTorch)", "import nnunetv2.inference.predict_from_raw_data"),
    ("MONAI (after both; what a diffusion model needs)", "import monai.networks.nets"),
)
"""The third-party imports of a default run, in the order a run makes them."""


def _env(source: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(source)}


def run_once(source: Path, extra: list[str]) -> dict:
    """One whole process: wall seconds and peak RSS from /usr/bin/time, the pipeline seconds from its report."""
    with tempfile.TemporaryDirectory() as out:
        command = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "SpineSegDiffLib.apps.cli", "segment",
                   str(SAMPLE), "-o", out, "--quiet", "--device", "cpu", *extra]
        run = subprocess.run(command, capture_output=True, text=True, env=_env(source), check=True)
        wall, rss_kb = run.stderr.strip().splitlines()[-1].split()
        report = json.loads((Path(out) / "image_report.json").read_text())
    return {"whole_s": float(wall), "pipeline_s": report["timings_s"]["total"], "peak_rss_mb": int(rss_kb) // 1024}


def import_seconds(source: Path) -> float:
    code = f"import time; t = time.perf_counter(); {IMPORTS}; print(time.perf_counter() - t)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(source), check=True)
    return float(run.stdout.strip())


def heavy_import_seconds() -> list[float]:
    """Seconds of each of :data:`HEAVY_IMPORTS`, one after the other in one fresh process."""
    steps = "; ".join(f"t = time.perf_counter(); {code}; print(time.perf_counter() - t)" for _, code in HEAVY_IMPORTS)
    run = subprocess.run([sys.executable, "-c", f"import time; {steps}"], capture_output=True, text=True, check=True)
    return [float(line) for line in run.stdout.split()]


def measure(source: Path, repeat: int) -> list[dict]:
    rows = []
    for name, extra in CONFIGS.items():
        runs = [run_once(source, extra) for _ in range(repeat)]
        whole = statistics.median(r["whole_s"] for r in runs)
        pipeline = statistics.median(r["pipeline_s"] for r in runs)
        rows.append({"configuration": name, "whole_s": round(whole, 2), "pipeline_s": round(pipeline, 2),
                     "ratio": round(whole / pipeline, 2), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)})
    imports = statistics.median(import_seconds(source) for _ in range(repeat))
    rows.append({"configuration": "imports of a run", "whole_s": round(imports, 2)})
    heavy = [heavy_import_seconds() for _ in range(repeat)]
    for n, (name, _) in enumerate(HEAVY_IMPORTS):
        rows.append({"configuration": f"import {name}", "whole_s": round(statistics.median(h[n] for h in heavy), 2)})
    return rows


def markdown(rows: list[dict], repeat: int) -> str:
    lines = [f"Single case ({SAMPLE.parent.name}, central slice, --device cpu), median of {repeat} processes; "
             "`pipeline` is the segmentation time the run reports (without loading models or writing).", "",
             "| configuration | whole process (s) | pipeline (s) | whole / pipeline | peak RSS (MB) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['configuration']} | {r['whole_s']} | {r.get('pipeline_s', '-')} | {r.get('ratio', '-')} "
                     f"| {r.get('peak_rss_mb', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--source", type=Path, default=REPO / "SpineSegDiff", help="folder holding SpineSegDiffLib")
    parser.add_argument("--name", default="startup")
    args = parser.parse_args()
    rows = measure(args.source.resolve(), args.repeat)
    text = markdown(rows, args.repeat)
    print(text)
    results = REPO / "bench" / "results"
    (results / f"{args.name}.md").write_text(text)
    (results / f"{args.name}.json").write_text(json.dumps({"source": str(args.source), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

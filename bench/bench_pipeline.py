"""Speed and peak memory of the pipeline, per stage, side by side (not a test).

    python bench/bench_pipeline.py [--inputs FILE ...] [--modes central slices volume] [--repeat 2] [--name pipeline]
                                   [--device cpu|cuda|mps]

Modes: the central slice, every slice with the 2D model, the 3D Diff-UNet over the volume.
Each configuration runs in its own process (so peak memory is its own) on the same machine:
(a) nnU-Net presegmentation alone, (b) the research-code-equivalent setting (S = 15, 50 steps from
t = 49, one sample per network call, fp32), (c) our default (the ``standard`` preset). Prints a
Markdown table with ratios to the default and saves it to ``bench/results/pipeline.md`` (+ ``.json``).
On a GPU (``--device cuda``) the stages are timed the same way (each ends with its results on the
host) and the JSON rows add the device name and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SpineSegDiff"))

CONFIGS = {
    "presegmentation only": {"refine": False},
    "research-code equivalent": {"samples": 15, "steps": 50, "fused_steps": 10, "t_start": 49, "sample_batch": 1,
                                 "bfloat16": False},
    "default (standard)": {},
    "fast preset": {"preset": "fast"},
}
DEFAULT_INPUTS = [REPO / "Resources/Samples/spider_t2_sample/image.nii.gz",
                  REPO.parent / "shared/data/samples/lumbar-t2-fastmonai/image.nii.gz",
                  REPO.parent / "shared/data/samples/thoracolumbar-t2-sct/image.nii.gz"]


def run_one(input_path: str, mode: str, config: str, repeat: int, device: str = "cpu") -> dict:
    """In this process: load models, then time ``repeat`` runs (the first pays one-off warm-up); return the best."""
    from SpineSegDiffLib.inference.pipeline import Segmenter
    from SpineSegDiffLib.io import read_volume
    from SpineSegDiffLib.options import SegmentOptions
    from SpineSegDiffLib.outputs.writer import write_case

    options = SegmentOptions(mode=mode, device=device, **CONFIGS[config])
    segmenter = Segmenter(device=device)
    image = read_volume(input_path)
    best = None
    for _ in range(repeat):
        result = segmenter.segment(image, options)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            write_case(result, Path(out), "bench", input_path)
            timings = {**result.timings, "writing": round(time.perf_counter() - start, 3)}
        if best is None or timings["total"] < best["total"]:
            best = timings
    best["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    best["device"] = str(segmenter.device)
    if segmenter.device.type == "cuda":
        import torch

        best["device"] = torch.cuda.get_device_name(segmenter.device)
        best["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(segmenter.device) / 2**20, 1)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", type=Path, default=[p for p in DEFAULT_INPUTS if p.is_file()])
    parser.add_argument("--modes", nargs="+", default=["central", "slices", "volume"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--name", default="pipeline", help="results file stem in bench/results")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.add_argument("--one", nargs=3, metavar=("INPUT", "MODE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, args.repeat, args.device)))
        return
    rows = []
    for path in args.inputs:
        for mode in args.modes:
            for config in args.configs:
                if mode != "central" and config == "research-code equivalent":
                    continue  # hours per volume on a CPU; the central-slice ratio tells the story
                command = [sys.executable, __file__, "--one", str(path), mode, config, "--repeat", str(args.repeat),
                           "--device", args.device]
                output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                rows.append({"input": path.parent.name, "mode": mode, "config": config,
                             **json.loads(output.strip().splitlines()[-1])})
                print(rows[-1], flush=True)
    table = markdown(rows)
    print(table)
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{args.name}.md").write_text(table)
    (results / f"{args.name}.json").write_text(json.dumps(rows, indent=2))


def markdown(rows: list[dict]) -> str:
    lines = ["| input | mode | configuration | preprocess | presegmentation | diffusion | postprocess | writing |"
             " total (s) | x default | diffusion / presegmentation | peak RSS (MB) |", "|---" * 12 + "|"]
    for row in rows:
        default = next((r for r in rows if r["input"] == row["input"] and r["mode"] == row["mode"]
                        and r["config"] == "default (standard)"), None)
        ratio = row["total"] / default["total"] if default else float("nan")
        lines.append(f"| {row['input']} | {row['mode']} | {row['config']} | {row['preprocess']:.2f} | "
                     f"{row['presegmentation']:.2f} | {row['diffusion']:.2f} | {row['postprocess']:.2f} | "
                     f"{row['writing']:.2f} | {row['total']:.2f} | {ratio:.2f} | "
                     f"{row['diffusion'] / row['presegmentation']:.1f} | {row['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

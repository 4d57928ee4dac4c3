"""Speed of the diffusion stage alone on any device, e.g. a CUDA GPU (not a test).

    python bench/bench_refiner.py [--device auto] [--slices bench/cache/test_slices.npz]

Needs only PyTorch and MONAI (the slices come from ``accuracy_vs_cost.py prepare``). Times one
central slice per configuration: the research-code-equivalent setting (S = 15, 50 steps, one chain
per network call, fp32), our presets with all chains in one call, in fp32 and bfloat16 autocast.
With ``--volume`` (``bench/cache/test_volume.npz``) it also times the volumetric modes on a whole
test volume: the 2D model on every slice and the 3D Diff-UNet, both with the ``standard`` volume preset.
On CUDA it also runs the default once under ``torch.cuda.set_sync_debug_mode("warn")`` and counts
the synchronising CUDA calls of one refinement (expected: a constant few before the loop, none per step). Writes
``refiner_<device>.{md,json}`` into ``--results``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "SpineSegDiff"), str(REPO)]

CONFIGS = {
    "research-code equivalent (S=15, 50 steps, batch 1, fp32)": dict(samples=15, steps=50, fused_steps=10,
                                                                     t_start=49, sample_batch=1),
    "fast (S=15, 2 steps), fp32": dict(samples=15, steps=2, fused_steps=2),
    "standard (S=15, 5 steps), fp32": dict(samples=15, steps=5, fused_steps=5),
    "paper (S=15, 10 steps), fp32": dict(samples=15, steps=10, fused_steps=10),
    "fast (S=15, 2 steps), bf16": dict(samples=15, steps=2, fused_steps=2, bfloat16=True),
    "standard (S=15, 5 steps), bf16": dict(samples=15, steps=5, fused_steps=5, bfloat16=True),
    "paper (S=15, 10 steps), bf16": dict(samples=15, steps=10, fused_steps=10, bfloat16=True),
}


def main() -> None:
    import torch

    from SpineSegDiffLib.inference.postprocess import roi_columns
    from SpineSegDiffLib.inference.refiner import DiffusionRefiner
    from SpineSegDiffLib.inference.sampling import SamplingOptions
    from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_MODELS_DIR, open_model_folder
    from SpineSegDiffLib.options import CPU_SAMPLE_BATCH, resolve_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--slices", type=Path, default=REPO / "bench" / "cache" / "test_slices.npz")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--volume", type=Path, help="time the volumetric modes on this volume too")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()

    device = resolve_device(args.device)
    data = np.load(args.slices)
    columns = roi_columns(data["presegmentation"][0])
    image, preseg = data["image"][:1, :, columns], data["presegmentation"][:1, :, columns]
    refiner = DiffusionRefiner(open_model_folder(DEFAULT_MODELS_DIR / DEFAULT_DIFFUSION, "diffusion"), device)
    rows: dict[str, dict] = {}
    for name, config in CONFIGS.items():
        if config.get("bfloat16") and device.type == "cpu":
            continue
        batch = config.pop("sample_batch", 15 if device.type != "cpu" else CPU_SAMPLE_BATCH)
        options = SamplingOptions(**config, sample_batch=batch)
        refiner(image, preseg, options)  # warm-up
        times = []
        for _ in range(args.repeat):
            _synchronise(device)
            start = time.perf_counter()
            refiner(image, preseg, options)
            _synchronise(device)
            times.append(time.perf_counter() - start)
        rows[name] = {"seconds": min(times), "network_calls": -(-options.samples // batch) * options.steps}
        print(f"{name}: {rows[name]['seconds']:.3f} s", flush=True)
    if args.volume:
        rows.update(time_volume_modes(np.load(args.volume), device, args.repeat))
    baseline = next(iter(rows.values()))["seconds"]
    for row in rows.values():
        row["speed-up vs research code"] = baseline / row["seconds"] if row["network_calls"] else None
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else str(device),
              "torch": torch.__version__, "slice_shape": list(image.shape[1:]), "rows": rows}
    if device.type == "cuda":
        result["synchronising_calls_per_refine"] = count_synchronisations(refiner, image, preseg, SamplingOptions)
        result["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    write(result, args.results, device.type)


def time_volume_modes(volume, device, repeat: int) -> dict:
    """Seconds for the 2D model on every slice and for the 3D Diff-UNet over one model-space volume."""
    from SpineSegDiffLib.inference.refiner import DiffusionRefiner, refine_slices
    from SpineSegDiffLib.inference.volumetric import VolumeRefiner
    from SpineSegDiffLib.modelset.folder import (
        DEFAULT_DIFFUSION,
        DEFAULT_DIFFUSION_3D,
        DEFAULT_MODELS_DIR,
        open_model_folder,
    )
    from SpineSegDiffLib.options import SegmentOptions

    images, preseg = volume["image"], volume["presegmentation"]
    slice_refiner = DiffusionRefiner(open_model_folder(DEFAULT_MODELS_DIR / DEFAULT_DIFFUSION, "diffusion"), device)
    volume_refiner = VolumeRefiner(open_model_folder(DEFAULT_MODELS_DIR / DEFAULT_DIFFUSION_3D, "diffusion"), device)
    runs = {
        f"every slice, 2D ({len(images)} slices, S=5, 2 steps)":
            lambda: refine_slices(slice_refiner, images, preseg, SegmentOptions(mode="slices").sampling(
                slice_refiner.settings, on_gpu=device.type != "cpu")),
        f"volume, 3D Diff-UNet ({len(images)} slices, S=5, 2 steps)":
            lambda: volume_refiner(images, preseg, SegmentOptions(mode="volume").sampling(
                volume_refiner.settings, on_gpu=device.type != "cpu")),
    }
    rows = {}
    for name, run in runs.items():
        run()
        times = []
        for _ in range(repeat):
            _synchronise(device)
            start = time.perf_counter()
            run()
            _synchronise(device)
            times.append(time.perf_counter() - start)
        rows[name] = {"seconds": min(times), "network_calls": None}
        print(f"{name}: {rows[name]['seconds']:.3f} s", flush=True)
    return rows


def count_synchronisations(refiner, image, preseg, sampling_options) -> int:
    """Synchronising CUDA calls during one ``refine()`` (the final copy of the results to the host excluded)."""
    import torch

    from SpineSegDiffLib.inference.postprocess import one_hot
    from SpineSegDiffLib.inference.sampling import refine
    from SpineSegDiffLib.labels import NUM_CLASSES

    image_t = torch.from_numpy(refiner.network_image(image)[:, None].astype(np.float32)).to(refiner.device)
    preseg_t = torch.from_numpy(one_hot(preseg, NUM_CLASSES).swapaxes(0, 1).copy()).to(refiner.device)
    options = sampling_options(samples=15, steps=5, fused_steps=5, sample_batch=15)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        refine(refiner.net, refiner.scheduler, image_t, preseg_t, options)
        torch.cuda.set_sync_debug_mode("default")
    for warning in caught:
        print("sync:", str(warning.message)[:200])
    return sum("called a synchronizing" in str(w.message) for w in caught)


def _synchronise(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def write(result: dict, folder: Path, device_type: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"refiner_{device_type}.json").write_text(json.dumps(result, indent=2))
    lines = [f"Diffusion stage only, one central slice {tuple(result['slice_shape'])}, {result['device']}, "
             f"torch {result['torch']}.", "",
             "| configuration | network calls | seconds | x faster than research code |", "|---|---|---|---|"]
    for name, row in result["rows"].items():
        speed_up = row["speed-up vs research code"]
        lines.append(f"| {name} | {row['network_calls'] or '-'} | {row['seconds']:.3f} | "
                     f"{f'{speed_up:.1f}' if speed_up else '-'} |")
    if "synchronising_calls_per_refine" in result:
        lines += ["", f"Synchronising CUDA calls in one refine() call (5 steps): "
                      f"{result['synchronising_calls_per_refine']}; peak GPU memory "
                      f"{result['peak_gpu_memory_mb']:.0f} MB."]
    (folder / f"refiner_{device_type}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

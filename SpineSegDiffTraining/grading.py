"""``spinesegdiff-train grading``: train, evaluate and bundle the disc-grading CNN.

Samples: on the central model-space slice of every case and the slices around it (``--grading-offsets``),
the ground-truth discs are split and counted from the bottom with :func:`SpineSegDiffLib.levels.find_levels`
and matched to ``radiological_gradings.csv`` by (patient, ``IVD label`` = ``from_bottom``). The
patient-wise split is the one every stage uses; test patients are only evaluated, on the central slice.
Training resumes from ``WORK/grading/checkpoint.pt`` (saved every epoch).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.grading import GRADES, GradingNet, level_crops, predictions
from SpineSegDiffLib.levels import find_levels
from SpineSegDiffLib.measurements import measure_levels

from .grading_report import evaluation_metrics, write_bundle
from .prepare import load_case

GRADINGS_FILE = "radiological_gradings.csv"
OFFSETS = (-2, -1, 0, 1, 2)


def patient_number(case_id: str) -> int:
    """``spider_005`` or ``5_t2`` -> 5."""
    match = re.search(r"\d+", case_id)
    if not match:
        raise SpineSegDiffError(f"case {case_id} has no patient number to match the gradings")
    return int(match.group())


def read_gradings(path: Path) -> dict[tuple[int, int], tuple[int, int, int]]:
    """``(patient, IVD label) -> (Pfirrmann grade, narrowing 0/1, Modic change 0/1)``."""
    if not path.is_file():
        raise SpineSegDiffError(f"no {GRADINGS_FILE} at {path}", "pass --gradings or put it into the data folder")
    with open(path, newline="") as stream:
        return {(int(r["Patient"]), int(r["IVD label"])):
                (int(r["Pfirrman grade"]), int(r["Disc narrowing"]), int(int(r["Modic"]) > 0))
                for r in csv.DictReader(stream)}


def disc_samples(files: dict[str, Path], case_ids: list[str], table: dict, offsets=OFFSETS) -> dict[str, np.ndarray]:
    """Crops ``(N, 3, 48, 64)``, ``grade`` (0..4), ``narrowing``, ``modic``, ``height_index`` (nan if
    unmeasured) and ``patient`` ``(N,)`` of every graded disc on the chosen slices."""
    rows: dict[str, list] = {k: [] for k in ("crops", "grade", "narrowing", "modic", "height_index", "patient")}
    for case_id in case_ids:
        image, labels = load_case(files[case_id])
        patient = patient_number(case_id)
        for offset in offsets:
            k = len(image) // 2 + offset
            if not 0 <= k < len(image):
                continue
            levels = find_levels(labels[k], image[k])
            indices = {d["from_bottom"]: d["height_index"] for d in measure_levels(levels, labels[k])["discs"]}
            numbers, crops = level_crops(image[k], labels[k], levels)
            for number, crop in zip(numbers, crops):
                if (patient, number) in table:
                    grade, narrowing, modic = table[(patient, number)]
                    for key, value in zip(rows, (crop, grade - 1, narrowing, modic, indices.get(number), patient)):
                        rows[key].append(np.nan if value is None else value)
    return {key: np.stack(values) if key == "crops" else np.array(values, float) for key, values in rows.items()}


def augment(crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 4 px and intensity scaling 0.8-1.2 of the image channel."""
    shift = torch.randint(-4, 5, (2,), generator=generator).tolist()
    crops = torch.roll(crops, shifts=shift, dims=(2, 3))
    scale = 0.8 + 0.4 * torch.rand(len(crops), 1, 1, generator=generator)
    return torch.cat([crops[:, :1] * scale[:, None], crops[:, 1:]], dim=1)


def loss_of(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy over the 5 grades plus binary cross-entropy of both flags."""
    bce = nn.functional.binary_cross_entropy_with_logits
    return (nn.functional.cross_entropy(logits[:, :len(GRADES)], batch["grade"].long(), label_smoothing=0.05)
            + bce(logits[:, len(GRADES)], batch["narrowing"]) + bce(logits[:, len(GRADES) + 1], batch["modic"]))


def train(samples: dict[str, np.ndarray], run_dir: Path, epochs: int, widths=(16, 32, 64), seed: int = 0) -> GradingNet:
    """Train (resuming from ``run_dir/checkpoint.pt``) and return the network in eval mode."""
    torch.manual_seed(seed)
    network = GradingNet(widths)
    optimiser = torch.optim.AdamW(network.parameters(), lr=2e-3, weight_decay=1e-3)
    checkpoint, start = run_dir / "checkpoint.pt", 0
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        start = int(state["epoch"])
    data = {k: torch.from_numpy(v.astype(np.float32)) for k, v in samples.items() if k != "height_index"}
    generator = torch.Generator().manual_seed(seed + start)
    run_dir.mkdir(parents=True, exist_ok=True)
    for epoch in range(start, epochs):
        network.train()
        order = torch.randperm(len(data["grade"]), generator=generator)
        for batch_indices in order.split(32):
            batch = {k: v[batch_indices] for k, v in data.items()}
            loss = loss_of(network(augment(batch["crops"], generator)), batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        torch.save({"network": network.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch + 1},
                   checkpoint)
        print(f"grading epoch {epoch + 1}/{epochs} loss {loss.item():.3f}", flush=True)
    return network.eval()


@torch.no_grad()
def predict(network: GradingNet, crops: np.ndarray) -> dict[str, np.ndarray]:
    return predictions(network(torch.from_numpy(crops.astype(np.float32))))


def run_grading(workspace, args) -> dict:
    """Prepare, train, evaluate on the test patients, bundle into ``args.out/disc-grading-t2``."""
    _, splits, files = workspace.prepare(args.data, args.folds)
    table = read_gradings(Path(args.data) / GRADINGS_FILE)
    training = disc_samples(files, splits.train_val, table)
    test = disc_samples(files, splits.test, table, offsets=(0,))
    network = train(training, workspace.root / "grading", args.grading_epochs)
    metrics = evaluation_metrics(predict(network, test["crops"]), test)
    metrics |= {"training_discs": len(training["grade"]), "test_discs": len(test["grade"]),
                "test_cases": splits.test}
    (workspace.root / "grading" / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_bundle(network, Path(args.out) / "disc-grading-t2", metrics, args.grading_epochs)
    return metrics

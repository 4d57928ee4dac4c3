"""Disc grading: Pfirrmann grade (1-5) with class probabilities, and narrowing and Modic-change flags.

Explainable linear models on hand-crafted per-disc features of one model-space slice (1 mm pixels,
superior up, anterior left), measured from the image and the named levels of :func:`~.levels.find_levels`:

* signal: the disc's intensity percentiles, the mean of its core (the central half of its depth and
  height: the nucleus region) and of its rim, each divided by the cerebrospinal fluid (CSF) reference,
  the median intensity of the spinal canal within :data:`CANAL_BAND_MM` rows of the disc (on T2 the
  Pfirrmann scheme compares the nucleus with CSF); the fraction of disc pixels brighter than half the
  CSF (the bright nucleus) and darker than the adjacent vertebral bodies; the spread of intensities
  (homogeneity); disc and core against the vertebral bodies next to them;
* shape: the heights and height index of :func:`~.measurements.measure_levels`, depth, area and the
  anterior/posterior height ratio;
* context on the slice: the disc's signal and height relative to the brightest, the median and the
  tallest disc of the same slice, and the level number;
* endplates (Modic changes): the signal of the vertebral marrow next to the disc (within
  :data:`ENDPLATE_BAND_MM`) against the rest of the same bodies.

Heads: an ordinal (cumulative-logit) or multinomial logistic model for the grade and two logistic
models for the flags, each on its own subset of the features, standardised with the training
medians (which also fill undefined values), means and standard deviations. The model folder (kind
``grading``) holds ``model.json`` with every number (no pickled code) and ``config.json``.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import SpineSegDiffError
from ..labels import by_key
from ..modelset.folder import ModelFolder
from .calibration import Calibration, tempered
from .instances import principal_axes
from .levels import Level, Levels
from .measurements import measure_levels, project

GRADES = (1, 2, 3, 4, 5)
MODEL_FILE = "model.json"

CANAL_BAND_MM = 20.0
"""Rows of canal above and below a disc that set its CSF reference."""
ENDPLATE_BAND_MM = 6.0
"""Depth of the vertebral marrow next to a disc that counts as endplate-adjacent."""
BRIGHT_FRACTION_OF_CSF = 0.5

FEATURE_NAMES = (
    "level", "mean_csf", "p10_csf", "p50_csf", "p90_csf", "core_csf", "rim_csf", "core_minus_rim_csf",
    "bright_fraction", "std_csf", "spread_csf", "disc_to_bodies", "core_to_bodies", "p90_to_bodies",
    "dark_fraction", "relative_mean", "relative_core", "median_relative_mean",
    "mean_height_mm", "anterior_height_mm", "middle_height_mm", "posterior_height_mm", "height_index",
    "relative_height", "depth_mm", "area_mm2", "wedge", "endplate_to_body", "endplate_max_to_body",
    "endplate_csf", "canal_csf_level",
)
"""Columns of :func:`slice_features`, in order."""


def percentile_or(values: np.ndarray, q: float, default: float) -> float:
    return float(np.percentile(values, q)) if len(values) else default


def csf_reference(image: np.ndarray, labels: np.ndarray, disc_mask: np.ndarray) -> float:
    """Median canal intensity within :data:`CANAL_BAND_MM` rows of the disc (all canal rows when that
    band holds fewer than 20 canal pixels; the 99th percentile of the slice without a canal).

    Args:
        image: ``(H, W)`` intensities; labels: uint8 ``(H, W)``; disc_mask: boolean ``(H, W)``.
    """
    canal = labels == by_key("SC").value
    rows = np.flatnonzero(disc_mask.any(axis=1))
    band = np.zeros_like(canal)
    band[max(rows[0] - int(CANAL_BAND_MM), 0):rows[-1] + int(CANAL_BAND_MM) + 1] = True
    near = image[canal & band]
    values = near if len(near) >= 20 else image[canal]
    reference = percentile_or(values, 50, percentile_or(image[image > 0], 99, 1.0))
    return max(reference, 1.0)


def core_mask(disc_mask: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)``: disc pixels in the central half of its depth and height (the nucleus region)."""
    frame = principal_axes(disc_mask)
    u, v = project(disc_mask, frame)
    central = ((np.abs(u - np.median(u)) <= 0.25 * (np.ptp(u) + 1))
               & (np.abs(v - np.median(v)) <= 0.25 * (np.ptp(v) + 1)))
    points = np.argwhere(disc_mask)[central]
    core = np.zeros_like(disc_mask)
    core[points[:, 0], points[:, 1]] = True
    return core


def endplate_ratios(image: np.ndarray, levels: Levels, disc: Level) -> tuple[float, float, float]:
    """Mean and largest endplate-band / whole-body intensity ratio over the (up to two) bodies next to
    ``disc``, and the mean endplate-band intensity; ``(1, 1, nan)`` when neither body is segmented."""
    disc_mask = levels.mask(disc)
    frame = principal_axes(disc_mask)
    centre_v = project(disc_mask, frame)[1].mean()
    ratios, bands = [], []
    for body in (v for v in levels.vertebrae if v.from_bottom in (disc.from_bottom, disc.from_bottom - 1)):
        mask = levels.mask(body)
        if mask.sum() < 30:
            continue
        distance = np.abs(project(mask, frame)[1] - centre_v)
        near = distance <= distance.min() + ENDPLATE_BAND_MM
        values = image[mask]
        ratios.append(values[near].mean() / max(values.mean(), 1.0))
        bands.append(values[near].mean())
    if not ratios:
        return 1.0, 1.0, float("nan")
    return float(np.mean(ratios)), float(np.max(ratios)), float(np.mean(bands))


def bodies_mean(image: np.ndarray, levels: Levels, disc: Level) -> float:
    """Mean intensity of the vertebral bodies above and below ``disc`` (nan when neither is segmented)."""
    masks = [levels.mask(v) for v in levels.vertebrae if v.from_bottom in (disc.from_bottom, disc.from_bottom - 1)]
    masks = [m for m in masks if m.any()]
    return float(np.mean([image[m].mean() for m in masks])) if masks else float("nan")


def signal_features(image: np.ndarray, labels: np.ndarray, levels: Levels, disc: Level) -> dict[str, float]:
    """Intensity features of one segmented disc (see the module docstring)."""
    mask = levels.mask(disc)
    csf = csf_reference(image, labels, mask)
    values = image[mask] / csf
    core = core_mask(mask)
    core_values = image[core] / csf if core.any() else values
    rim_values = image[mask & ~core] / csf if (mask & ~core).any() else values
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    bodies = float(np.maximum(bodies_mean(image, levels, disc), 1.0)) / csf  # nan without bodies
    endplate_mean, endplate_max, endplate_band = endplate_ratios(image, levels, disc)
    return {
        "mean_csf": float(values.mean()), "p10_csf": float(p10), "p50_csf": float(p50), "p90_csf": float(p90),
        "core_csf": float(core_values.mean()), "rim_csf": float(rim_values.mean()),
        "core_minus_rim_csf": float(core_values.mean() - rim_values.mean()),
        "bright_fraction": float((values > BRIGHT_FRACTION_OF_CSF).mean()),
        "std_csf": float(values.std()), "spread_csf": float(p90 - p10),
        "disc_to_bodies": float(values.mean() / bodies), "core_to_bodies": float(core_values.mean() / bodies),
        "p90_to_bodies": float(p90 / bodies), "dark_fraction": float((values < bodies).mean()),
        "endplate_to_body": endplate_mean, "endplate_max_to_body": endplate_max,
        "endplate_csf": endplate_band / csf, "canal_csf_level": csf / 255.0,
    }


def shape_features(measured: dict, mask: np.ndarray) -> dict[str, float]:
    """Heights (mm), height index, depth, area and anterior/posterior wedge of one disc; nan if unmeasured."""
    def value(key: str) -> float:
        return float(measured[key]) if measured.get(key) is not None else float("nan")

    frame = principal_axes(mask)
    return {
        "mean_height_mm": value("mean_height_mm"), "anterior_height_mm": value("anterior_height_mm"),
        "middle_height_mm": value("middle_height_mm"), "posterior_height_mm": value("posterior_height_mm"),
        "height_index": value("height_index"), "depth_mm": float(np.ptp(project(mask, frame)[0]) + 1.0),
        "area_mm2": float(mask.sum()),
        "wedge": value("anterior_height_mm") / max(value("posterior_height_mm"), 1.0),
    }


def add_slice_context(rows: list[dict[str, float]]) -> None:
    """Add each disc's signal and height relative to the brightest / tallest disc of the slice, in place."""
    def top(key: str) -> float:
        finite = [r[key] for r in rows if np.isfinite(r[key])]
        return max(finite) if finite else float("nan")

    brightest, brightest_core, tallest = top("mean_csf"), top("core_csf"), top("height_index")
    typical = float(np.median([r["mean_csf"] for r in rows])) if rows else 1.0
    for row in rows:
        row["median_relative_mean"] = row["mean_csf"] / typical if typical > 0 else 1.0
        row["relative_mean"] = row["mean_csf"] / brightest if brightest > 0 else 1.0
        row["relative_core"] = row["core_csf"] / brightest_core if brightest_core > 0 else 1.0
        row["relative_height"] = row["height_index"] / tallest if tallest > 0 else float("nan")


def slice_features(image: np.ndarray, labels: np.ndarray, levels: Levels,
                   measured_discs: list[dict] | None = None) -> tuple[list[int], np.ndarray]:
    """``(from_bottom numbers, features (N, len(FEATURE_NAMES)))`` of the segmented discs of one slice;
    nan where a measurement is not defined (e.g. no vertebra above the disc for the height index).

    Args:
        image: ``(H, W)`` model-space intensities, 0..255.
        labels: uint8 ``(H, W)`` labelmap.
        levels: :func:`~.levels.find_levels` of ``labels``.
        measured_discs: the discs of :func:`~.measurements.measure_levels` for these levels when the caller
            has them already (measured here otherwise).
    """
    if measured_discs is None:
        measured_discs = measure_levels(levels, labels)["discs"]
    measured = {d["from_bottom"]: d for d in measured_discs}
    discs = [d for d in levels.discs if not d.missing]
    rows = []
    for disc in discs:
        mask = levels.mask(disc)
        rows.append({"level": float(disc.from_bottom), **signal_features(image, labels, levels, disc),
                     **shape_features(measured[disc.from_bottom], mask)})
    add_slice_context(rows)
    features = np.array([[row[name] for name in FEATURE_NAMES] for row in rows], float)
    return [d.from_bottom for d in discs], features.reshape(len(rows), len(FEATURE_NAMES))


def standardise(features: np.ndarray, scaling: dict[str, list[float]]) -> np.ndarray:
    """``(N, F)`` features -> ``(N, F)`` standardised; nan filled with the training median first."""
    filled = np.where(np.isnan(features), np.asarray(scaling["median"]), features)
    return (filled - np.asarray(scaling["mean"])) / np.asarray(scaling["scale"])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def ordinal_probabilities(x: np.ndarray, weights: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Cumulative logit: ``(N, F)`` standardised features -> ``(N, K)`` probabilities, ``K = len(thresholds) + 1``."""
    cumulative = sigmoid(np.asarray(thresholds)[None, :] - (x @ np.asarray(weights))[:, None])
    bounded = np.concatenate([np.zeros((len(x), 1)), cumulative, np.ones((len(x), 1))], axis=1)
    return np.clip(np.diff(bounded, axis=1), 0.0, None)


def softmax_probabilities(x: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Multinomial logistic: ``(N, F)`` -> ``(N, K)`` with ``weights`` ``(K, F)`` and ``bias`` ``(K,)``."""
    logits = x @ np.asarray(weights).T + np.asarray(bias)
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def grade_probabilities(head: dict, x: np.ndarray) -> np.ndarray:
    """``(N, 5)`` Pfirrmann probabilities of a grade head (``kind`` ordinal or multinomial), rows summing to 1."""
    if head["kind"] == "ordinal":
        probabilities = ordinal_probabilities(x, head["weights"], head["thresholds"])
    elif head["kind"] == "multinomial":
        probabilities = softmax_probabilities(x, head["weights"], head["bias"])
    else:
        raise SpineSegDiffError(f"unknown grade model kind {head['kind']!r}", "reinstall the grading model")
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def head_inputs(head: dict, features: np.ndarray) -> np.ndarray:
    """The standardised columns ``(N, F_head)`` a head uses, picked by name from ``(N, len(FEATURE_NAMES))``."""
    columns = [FEATURE_NAMES.index(name) for name in head["features"]]
    return standardise(features[:, columns], head["scaling"])


def predict_heads(model: dict, features: np.ndarray) -> dict[str, np.ndarray]:
    """``(N, len(FEATURE_NAMES))`` -> Pfirrmann probabilities ``(N, 5)``, narrowing and Modic ``(N,)``."""
    out = {"pfirrmann": grade_probabilities(model["pfirrmann"], head_inputs(model["pfirrmann"], features))}
    for flag in ("narrowing", "modic"):
        head = model[flag]
        out[flag] = sigmoid(head_inputs(head, features) @ np.asarray(head["weights"]) + head["bias"])
    return out


def check_model(model: dict) -> dict:
    """The parsed ``model.json``, after checking that it names only known features."""
    for name in ("pfirrmann", "narrowing", "modic"):
        unknown = set(model.get(name, {}).get("features", [None])) - set(FEATURE_NAMES)
        if name not in model or unknown:
            raise SpineSegDiffError(f"the grading model lacks head {name!r} or uses unknown features {unknown}",
                                    "retrain it with this version (spinesegdiff-train grading)")
    return model


class DiscGrader:
    """A loaded grading model (plain JSON numbers; numpy only), with its :class:`~.calibration.Calibration`."""

    def __init__(self, model: ModelFolder) -> None:
        self.model = model
        if not model.file(MODEL_FILE).is_file():
            raise SpineSegDiffError(f"{model.path} has no {MODEL_FILE}: an older grading model",
                                    "retrain it with spinesegdiff-train grading or reinstall the models")
        self.parameters = check_model(json.loads(model.file(MODEL_FILE).read_text(encoding="utf-8")))
        self.calibration = Calibration.from_config(model.config)

    def __call__(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Features ``(N, len(FEATURE_NAMES))`` -> see :func:`predict_heads`, Pfirrmann probabilities calibrated."""
        if len(features) == 0:
            return {"pfirrmann": np.zeros((0, len(GRADES))), "narrowing": np.zeros(0), "modic": np.zeros(0)}
        out = predict_heads(self.parameters, features)
        return {**out, "pfirrmann": tempered(out["pfirrmann"], self.calibration.temperature)}

    def grade(self, image: np.ndarray, labels: np.ndarray, levels: Levels,
              measured_discs: list[dict] | None = None) -> dict[int, dict]:
        """Per disc ``from_bottom``: grade (None below the abstain threshold, with the reason under
        ``not_measured``), calibrated probabilities and flags, ready for the report (``measured_discs``: see
        :func:`slice_features`)."""
        numbers, features = slice_features(image, labels, levels, measured_discs)
        out = self(features)
        grades = {}
        for i, number in enumerate(numbers):
            probabilities = out["pfirrmann"][i]
            grade, why = self.calibration.grade(probabilities, GRADES)
            grades[number] = {
                "pfirrmann_grade": grade, "not_measured": {"pfirrmann_grade": why} if why else {},
                "pfirrmann_probabilities": [round(float(p), 4) for p in probabilities],
                "narrowing_probability": round(float(out["narrowing"][i]), 4),
                "modic_probability": round(float(out["modic"][i]), 4),
            }
        return grades

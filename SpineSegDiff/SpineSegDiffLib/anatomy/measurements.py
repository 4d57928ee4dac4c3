"""Per-level measurements on one sagittal slice: disc heights and height index, vertebral body height
and depth, dural sac diameter at each disc, sagittal slip, and the mean uncertainty of each.

Geometry: every structure is measured in a local frame, ``u`` along the disc plane pointing posterior
and ``v`` across it pointing superior. A disc's frame is its own principal axes; a vertebral body
takes the mean frame of its adjacent discs (bodies are nearly square in the sagittal plane, so their
own principal axes are ill-defined). Heights are the extent along ``v`` of the pixels within half a
pixel of a position along ``u``: anterior at 10 %, middle at 50 % and posterior at 90 % of the
structure's extent along ``u``; depths are the extent along ``u``. Lengths count pixels end to end
(a 10-pixel bar is 10 mm at 1 mm spacing), so an axis-aligned shape measures exactly.

Disc height index: the mean of the anterior, middle and posterior disc heights divided by the depth of
the vertebral body above the disc. Normalising disc height by the cranial vertebra's endplate depth is
the radiographic method of Frobin et al. (W. Frobin, P. Brinckmann, M. Biggemann, M. Tillotson,
K. Burton, "Precision measurement of disc height, vertebral height and sagittal plane displacement
from lateral radiographic views of the lumbar spine", Clinical Biomechanics 12 Suppl 1:S1-S63, 1997);
it cancels magnification and body size. Frobin measures on endplate corner points; here the heights
come from the segmentation, so absolute values are not interchangeable with Frobin's tables.

Every length also comes as a line (``lines_px``: its two end points, ``(row, column)`` pixel
coordinates, with the half pixel at each end included) so that a reader can see and adjust what was
measured; :func:`~.assessment.assess_slice` maps them to patient coordinates. The entries, the kinds that
carry each measure are defined in :mod:`~.report`; what each measure is, the mean height and the height index in
:mod:`~.conventions`. A measure that cannot be taken (no dural sac on the line behind the disc, no vertebral body
above or below, no heatmap) is None, with the reason in the entry's ``not_measured``; never a 0.0.

Dural sac diameter: the segmentation's "spinal canal" label holds the CSF-filled dural sac, not the bony canal;
its anteroposterior width is taken on the line from the disc's centre posterior along the disc's long axis.

Sagittal slip (Meyerding): how far the posterior wall of the upper body lies anterior to the posterior wall of
the lower one at the disc between them, along the disc, in mm and as a percentage of the lower body's superior
endplate (H. W. Meyerding, "Spondylolisthesis", Surg Gynecol Obstet 54:371-377, 1932). Each wall is placed where it
meets its endplate by the median of the body's posterior-most pixel over the rows 10-35 % of its height from that
endplate, so that a rounded corner, an osteophyte or a pedicle remnant does not move it. At L5/S1, where the
sacrum is rarely segmented (never in SPIDER's labels), the S1 endplate is the disc's lower surface: its
posterior-inferior and anterior-inferior corners. The slip's ``meyerding_grade`` and ``slip_reference`` (which
endplate it was measured on) come with it; an implausible slip (beyond a whole endplate, or on a reference endplate
too short to be whole on the slice) is refused with its reason. Conventions and thresholds are in
:mod:`.conventions`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np

from ..labels import by_key
from .conventions import (
    DURAL_SAC_WALK_MM,
    NO_DURAL_SAC,
    NO_HEATMAP,
    body_not_segmented,
    meyerding_grade,
    slip_refused,
)
from .instances import principal_axes
from .levels import Level, Levels, vertebra_name
from .report import HEIGHT_KEYS, LevelEntry, LevelReport, height_index, mean_height

POSITIONS = {"anterior": 0.10, "middle": 0.50, "posterior": 0.90}
DEFAULT_FRAME = (np.array([0.0, 1.0]), np.array([-1.0, 0.0]))


def project(mask: np.ndarray, frame: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of ``mask`` ``(H, W)`` in the frame: ``(u, v)``, each ``(n,)`` in pixels."""
    points = np.argwhere(mask).astype(float)
    return points @ frame[0], points @ frame[1]


Line = tuple[tuple[float, float], tuple[float, float]]
"""Two end points ``(row, column)`` in pixels."""


def frame_point(u: float, v: float, frame: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """Frame coordinates -> ``(row, column)`` (the frame is orthonormal)."""
    row, column = u * frame[0] + v * frame[1]
    return round(float(row), 2), round(float(column), 2)


def height_lines(mask: np.ndarray, frame: tuple[np.ndarray, np.ndarray]) -> dict[str, tuple[float, Line]]:
    """Anterior / middle / posterior extent along ``v`` at :data:`POSITIONS` along ``u``: ``(pixels, line)``."""
    u, v = project(mask, frame)
    result = {}
    for name, fraction in POSITIONS.items():
        position = u.min() + fraction * np.ptp(u)
        band = np.abs(u - position) <= 0.5
        if not band.any():
            band = np.abs(u - position) <= np.abs(u - position).min() + 1e-6
        low, high = v[band].min() - 0.5, v[band].max() + 0.5
        result[name] = (float(high - low), (frame_point(position, high, frame), frame_point(position, low, frame)))
    return result


def depth_line(mask: np.ndarray, frame: tuple[np.ndarray, np.ndarray]) -> tuple[float, Line]:
    """Extent along ``u`` in pixels, and its line through the middle of the extent along ``v``."""
    u, v = project(mask, frame)
    middle = (v.min() + v.max()) / 2
    low, high = u.min() - 0.5, u.max() + 0.5
    return float(high - low), (frame_point(low, middle, frame), frame_point(high, middle, frame))


def first_run(mask: np.ndarray, start: np.ndarray, direction: np.ndarray,
              max_length: float = DURAL_SAC_WALK_MM) -> tuple[float, float] | None:
    """Where the first run of ``mask`` met walking from ``start`` along ``direction`` begins and ends
    (distances from ``start`` in pixels), or None if there is none within ``max_length``."""
    step = 0.25
    samples = start[None, :] + np.arange(0, max_length, step)[:, None] * direction[None, :]
    index = np.round(samples).astype(int)
    inside = (index >= 0).all(axis=1) & (index[:, 0] < mask.shape[0]) & (index[:, 1] < mask.shape[1])
    hits = np.zeros(len(samples), bool)
    hits[inside] = mask[index[inside, 0], index[inside, 1]]
    if not hits.any():
        return None
    first = int(np.argmax(hits))
    after = np.flatnonzero(~hits[first:])
    end = first + (after[0] if len(after) else len(hits) - first)
    return first * step, end * step


def run_line(mask: np.ndarray, start: np.ndarray, direction: np.ndarray) -> tuple[float, Line] | None:
    """:func:`first_run` as ``(pixels, line)``."""
    run = first_run(mask, start, direction)
    if run is None:
        return None
    ends = [start + distance * direction for distance in run]
    return run[1] - run[0], tuple((round(float(r), 2), round(float(c), 2)) for r, c in ends)


def mean_over(heatmap: np.ndarray | None, mask: np.ndarray) -> float | None:
    """Mean of ``heatmap`` ``(H, W)`` over ``mask``; None without a heatmap or an empty mask."""
    if heatmap is None or not mask.any():
        return None
    return round(float(heatmap[mask].mean()), 4)


def lengths_mm(lengths: dict[str, tuple[float, Line]], spacing: float) -> tuple[dict[str, float], dict[str, Line]]:
    """``({name + "_mm": mm}, {name: line})`` of every ``(pixels, line)`` in ``lengths``."""
    return ({f"{name}_mm": round(pixels * spacing, 1) for name, (pixels, _) in lengths.items()},
            {name: line for name, (_, line) in lengths.items()})


def disc_frames(levels: Levels) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Principal-axis frame of every segmented disc, by ``from_bottom``."""
    return {d.from_bottom: principal_axes(levels.mask(d)) for d in levels.discs if not d.missing}


def vertebra_frame(vertebra: Level, frames: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean frame of the discs below (``from_bottom``) and above (``from_bottom + 1``) a vertebra."""
    near = [frames[k] for k in (vertebra.from_bottom, vertebra.from_bottom + 1) if k in frames]
    if not near:
        return DEFAULT_FRAME
    u = np.mean([f[0] for f in near], axis=0)
    u /= np.linalg.norm(u)
    return u, np.array([-u[1], u[0]])


def level_entry(level: Level, lines: dict[str, Line], heatmap, mask: np.ndarray, not_measured: dict[str, str],
                **measures) -> LevelEntry:
    """One level's entry: its name, count from the bottom, value in the level labelmap (None if not segmented),
    centroid (pixels, to 0.01), measured lines, the mean of ``heatmap`` over ``mask``, why a measure is None and
    ``measures``."""
    if heatmap is None and not level.missing:
        not_measured = {**not_measured, "mean_uncertainty": NO_HEATMAP}
    return LevelEntry(level.kind, level.name, level.from_bottom, level.instance or None,
                      tuple(round(float(c), 2) for c in level.centroid), lines, not_measured=not_measured,
                      mean_uncertainty=mean_over(heatmap, mask), **measures)


def measure_vertebra(levels: Levels, vertebra: Level, frames: dict, heatmap, spacing: float) -> LevelEntry:
    """Heights (anterior/middle/posterior), depth, their lines and the mean uncertainty of one body, in mm."""
    mask = levels.mask(vertebra)
    values, lines = {}, {}
    if mask.any():
        frame = vertebra_frame(vertebra, frames)
        lengths = {f"{k}_height": value for k, value in height_lines(mask, frame).items()}
        values, lines = lengths_mm(lengths | {"depth": depth_line(mask, frame)}, spacing)
    return level_entry(vertebra, lines, heatmap, mask, {}, **values)


def measure_disc(levels: Levels, disc: Level, labels: np.ndarray, frames: dict, heatmap,
                 spacing: float) -> LevelEntry:
    """Heights, mean height, dural sac diameter, their lines and the mean uncertainty of one disc, in mm (height
    index and slip added by :func:`add_relations`); the diameter is None, with its reason, when the line behind the
    disc meets no dural sac."""
    mask = levels.mask(disc)
    values, lines, not_measured = {}, {}, {}
    if mask.any():
        frame = frames[disc.from_bottom]
        values, lines = lengths_mm({f"{k}_height": value for k, value in height_lines(mask, frame).items()}, spacing)
        values["mean_height_mm"] = mean_height([values[key] for key in HEIGHT_KEYS])
        sac = run_line(labels == by_key("SC").value, np.array(disc.centroid), frame[0])
        if sac is None:
            not_measured["dural_sac_ap_diameter_mm"] = NO_DURAL_SAC
        else:
            values["dural_sac_ap_diameter_mm"] = round(sac[0] * spacing, 1)
            lines["dural_sac_ap_diameter"] = sac[1]
    return level_entry(disc, lines, heatmap, mask, not_measured, **values)


WALL_ROWS = (0.10, 0.35)
"""The rows, as fractions of a body's height from one endplate, whose edge pixels place its walls at that endplate."""
MIN_REFERENCE_FRACTION = 0.6
"""A reference endplate shorter than this fraction of the upper body's is not whole on the slice: slip refused."""


class Walls(NamedTuple):
    """A body's (or a disc surface's) posterior and anterior edges at one endplate, as ``u`` in pixels."""

    posterior: float
    anterior: float

    @property
    def length(self) -> float:
        """The endplate's length in pixels, counted end to end."""
        return self.posterior - self.anterior + 1.0


def body_walls(mask: np.ndarray, frame, upper_end: bool) -> Walls:
    """The walls of a body at its upper (``upper_end``) or lower endplate: the medians of each row's posterior-most
    and anterior-most pixel over the rows :data:`WALL_ROWS` of its height from that endplate."""
    u, v = project(mask, frame)
    rows = np.round(v).astype(int)
    top, bottom = rows.max(), rows.min()
    near, far = (top - WALL_ROWS[0] * (top - bottom), top - WALL_ROWS[1] * (top - bottom)) if upper_end else \
        (bottom + WALL_ROWS[0] * (top - bottom), bottom + WALL_ROWS[1] * (top - bottom))
    band = [r for r in np.unique(rows) if min(near, far) <= r <= max(near, far)] or [top if upper_end else bottom]
    return Walls(float(np.median([u[rows == r].max() for r in band])),
                 float(np.median([u[rows == r].min() for r in band])))


def disc_floor(mask: np.ndarray, frame) -> Walls:
    """The lower surface of a disc, standing for the endplate under it: its posterior-inferior and anterior-inferior
    corners (the pixels furthest along ``u - v`` and ``-u - v``)."""
    u, v = project(mask, frame)
    return Walls(float(u[np.argmax(u - v)]), float(u[np.argmax(-u - v)]))


class Slip(NamedTuple):
    """A slip as reported: mm and % (None when refused), the endplate it was measured on, why it was refused."""

    mm: float | None
    percent: float | None
    reference: str
    refused: str | None = None


def slip(levels: Levels, disc: Level, lower: Level | None, upper: Level, frame, spacing: float) -> Slip:
    """The Meyerding slip of ``upper`` over the endplate under ``disc``: the lower body's superior endplate, or at
    L5/S1 without a segmented sacrum the disc's lower surface; refused (None, with the reason) beyond a whole
    endplate or on a reference endplate shorter than :data:`MIN_REFERENCE_FRACTION` of the upper body's."""
    upper_walls = body_walls(levels.mask(upper), frame, upper_end=False)
    if lower is not None:
        reference, walls = f"{lower.name} superior endplate", body_walls(levels.mask(lower), frame, upper_end=True)
    else:
        reference, walls = "S1 superior endplate, taken as the L5/S1 disc's lower surface", \
            disc_floor(levels.mask(disc), frame)
    offset = walls.posterior - upper_walls.posterior
    mm, percent = round(offset * spacing, 1), round(100.0 * offset / walls.length, 1)
    why = slip_refused(percent, walls.length / upper_walls.length, MIN_REFERENCE_FRACTION)
    return Slip(None, None, reference, why) if why else Slip(mm, percent, reference)


def measure_report(levels: Levels, labels: np.ndarray, heatmap: np.ndarray | None = None,
                   spacing_mm: float = 1.0) -> LevelReport:
    """Every measurement of one slice, as typed entries in pixels (see :func:`measure_levels`)."""
    frames = disc_frames(levels)
    vertebrae = [measure_vertebra(levels, v, frames, heatmap, spacing_mm) for v in levels.vertebrae]
    discs = [measure_disc(levels, d, labels, frames, heatmap, spacing_mm) for d in levels.discs]
    discs = add_relations(levels, discs, vertebrae, frames, spacing_mm)
    return LevelReport(tuple(vertebrae), tuple(discs), tuple(levels.reasons), tuple(levels.rules))


def measure_levels(levels: Levels, labels: np.ndarray, heatmap: np.ndarray | None = None,
                   spacing_mm: float = 1.0) -> dict[str, list[dict]]:
    """Every measurement of one slice (:func:`measure_report` as :meth:`~.report.LevelReport.entry_lists`).

    Args:
        levels: from :func:`~.levels.find_levels` on ``labels``.
        labels: uint8 ``(H, W)`` labelmap (for the spinal canal).
        heatmap: optional float ``(H, W)`` uncertainty, 0..1.
        spacing_mm: isotropic pixel size.

    Returns:
        ``{"vertebrae": [...], "discs": [...]}``, bottom-up, one dict per level with keys in mm
        (``*_height_mm``, ``depth_mm``, ``dural_sac_ap_diameter_mm``, ``slip_mm``, ``slip_percent``), the
        dimensionless ``height_index`` and ``mean_uncertainty``, the level's ``label_value`` in
        ``levels.instances``, its ``centroid_px`` and the
        measured lines ``lines_px`` (``{"anterior_height": ((row, col), (row, col)), ...}``, one per
        length, named as the length without ``_mm``), and ``not_measured`` (why each None measure is None);
        levels inferred but not segmented carry ``"segmented": False`` and no measurements.
    """
    return measure_report(levels, labels, heatmap, spacing_mm).entry_lists()


def add_relations(levels: Levels, discs: list[LevelEntry], vertebrae: list[LevelEntry], frames: dict,
                  spacing: float) -> list[LevelEntry]:
    """The discs with their ``height_index`` (vs the body above) and the slip of the body above (:func:`slip`), each
    None with its reason when it cannot be taken."""
    by_number = {v.from_bottom: v for v in levels.vertebrae if not v.missing}
    by_disc = {d.from_bottom: d for d in levels.discs}
    depths = {v.from_bottom: v.depth_mm for v in vertebrae}
    related = []
    for entry in discs:
        number = entry.from_bottom
        lower, upper = by_number.get(number - 1), by_number.get(number)
        measurable = upper and number in frames and (lower or number == 1)
        shift = slip(levels, by_disc[number], lower, upper, frames[number], spacing) if measurable else None
        why = {**entry.not_measured, **(relation_reasons(levels, number) if entry.segmented else {})}
        if shift is not None and shift.refused:
            why |= dict.fromkeys(SLIP_KEYS, shift.refused)
        values = {"slip_mm": shift.mm, "slip_percent": shift.percent, "meyerding_grade": meyerding_grade(shift.percent),
                  "slip_reference": shift.reference} if shift and not shift.refused else {}
        related.append(replace(entry, height_index=height_index(entry.mean_height_mm, depths.get(number)),
                               not_measured=why, **values))
    return related


SLIP_KEYS = ("slip_mm", "slip_percent", "meyerding_grade", "slip_reference")


def relation_reasons(levels: Levels, number: int) -> dict[str, str]:
    """Why the height index and the slip of the disc ``number`` (``from_bottom``) would be None: the vertebral body
    above (the height index's depth, the slip's upper body) or below (the slip's lower body; at L5/S1 the disc's lower
    surface stands for S1) is not segmented. Only read where the measure is None
    (:meth:`~.report.LevelEntry.reasons`)."""
    segmented = {v.from_bottom for v in levels.vertebrae if not v.missing}
    above = None if number in segmented else body_not_segmented("above", vertebra_name(number))
    below = None if number - 1 in segmented or number == 1 else body_not_segmented("below", vertebra_name(number - 1))
    reasons = {"height_index": above} if above else {}
    return reasons | (dict.fromkeys(SLIP_KEYS, above or below) if above or below else {})

"""Levels through a volume: synthetic stacks of spine slices with known shifts, sizes and merges, and
the bundled SPIDER sample."""

import csv
import time

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO
from test_levels import IVD, SC, VB, synthetic_slice

from SpineSegDiffLib.anatomy import volume_levels
from SpineSegDiffLib.anatomy.levels import find_levels
from SpineSegDiffLib.anatomy.report import write_slice_levels_csv
from SpineSegDiffLib.anatomy.volume_levels import measure_slices, propagate_levels

SLICES = 9
CENTRE = SLICES // 2
NAMES_BOTTOM_UP = ["L5/S1", "L5", "L4/L5", "L4", "L3/L4", "L3", "L2/L3", "L2", "L1/L2", "L1"]
BODY_ROWS = {"L5": (265, 290), "L4": (230, 255), "L3": (195, 220), "L2": (160, 185), "L1": (125, 150)}
"""Rows ``[start, stop)`` of each body of ``synthetic_slice()`` (5 levels, 25 mm bodies, 10 mm discs)."""
DISC_ROWS = {"L5/S1": (290, 300), "L4/L5": (255, 265), "L3/L4": (220, 230), "L2/L3": (185, 195),
             "L1/L2": (150, 160)}
FRONT, BACK = 100, 135
"""Columns ``[FRONT, BACK)`` of the bodies and discs; the canal is at 138..149, posterior elements 160..174."""


def stacked(slices: int = SLICES) -> np.ndarray:
    """uint8 ``(N, 320, 320)``: the same synthetic spine slice on every slice."""
    labels, _ = synthetic_slice()
    return np.repeat(labels[None], slices, axis=0)


def shift_anterior_column(labels: np.ndarray, rows: int, columns: int) -> None:
    """Move the bodies and discs (not the canal or posterior elements) of one slice ``(H, W)`` in place."""
    front = labels[:, :BACK + 2].copy()
    spine = np.isin(front, (VB, IVD))
    labels[:, :BACK + 2][spine] = 0
    moved = np.roll(np.where(spine, front, 0), (rows, columns), axis=(0, 1))
    labels[:, :BACK + 2][moved > 0] = moved[moved > 0]


def narrow(labels: np.ndarray, front: int, back: int) -> None:
    """Keep only columns ``[front, back)`` of the bodies and discs of one slice ``(H, W)``, in place."""
    region = labels[:, :BACK + 2]
    spine = np.isin(region, (VB, IVD))
    keep = np.zeros(region.shape, bool)
    keep[:, front:back] = True
    region[spine & ~keep] = 0


def levels_by_name(levels):
    return {level.name: level for level in (*levels.vertebrae, *levels.discs)}


def central_levels(labels: np.ndarray):
    return find_levels(labels[CENTRE], np.full(labels.shape[1:], 50.0, np.float32))


@pytest.fixture
def drifting():
    """Slices further from the centre are shifted down 1 row and anterior 1 column per slice; the two
    outermost on each side are also narrower (27 mm instead of 35 mm deep)."""
    labels = stacked()
    for n in range(SLICES):
        offset = abs(n - CENTRE)
        shift_anterior_column(labels[n], offset, -offset)
        if offset >= 3:
            narrow(labels[n], FRONT - offset + 4, BACK - offset - 4)
    central = central_levels(labels)
    return labels, central, propagate_levels(central, labels, CENTRE)


def test_central_slice_instances_are_kept_exactly(drifting):
    labels, central, instances = drifting
    assert instances.dtype == np.int32 and instances.shape == labels.shape
    assert np.array_equal(instances[CENTRE], central.instances)


def test_each_level_keeps_its_instance_on_shifted_and_narrowed_slices(drifting):
    _, central, instances = drifting
    named = levels_by_name(central)
    for n in range(SLICES):
        offset = abs(n - CENTRE)
        for name, (start, stop) in {**BODY_ROWS, **DISC_ROWS}.items():
            row, column = (start + stop) // 2 + offset, (FRONT + BACK) // 2 - offset
            assert instances[n, row, column] == named[name].instance, (n, name)
        present = set(np.unique(instances[n])) - {0}
        assert present == {level.instance for level in named.values()}, n


def test_a_body_present_only_near_the_centre_stops_there():
    """L1 is on the central three slices, gone on the next ones and back further out: it must not be
    picked up again after it vanished, while the disc below it goes on."""
    labels = stacked()
    start, stop = BODY_ROWS["L1"]
    for n in (CENTRE - 2, CENTRE + 2):
        labels[n, start:stop, FRONT:BACK] = 0
    central = central_levels(labels)
    instances = propagate_levels(central, labels, CENTRE)
    l1, l1_l2 = levels_by_name(central)["L1"].instance, levels_by_name(central)["L1/L2"].instance
    for n in range(SLICES):
        near = abs(n - CENTRE) <= 1
        assert (instances[n] == l1).any() == near, n
        assert (instances[n] == l1_l2).any(), n
        if not near:
            assert not instances[n, start:stop].any(), n


def test_posterior_pieces_are_not_labelled_even_when_joined_to_a_body():
    """Outer slices have a pedicle joining L5 to its posterior element; the outermost has no canal
    label, so the canal line of its neighbour applies."""
    labels = stacked()
    for n in (0, 1, SLICES - 2, SLICES - 1):
        labels[n, 270:285, BACK:160] = VB
    labels[0][labels[0] == SC] = 0
    central = central_levels(labels)
    instances = propagate_levels(central, labels, CENTRE)
    canal_centre = (138 + 149) / 2
    assert not instances[:, :, int(np.ceil(canal_centre)):].any()
    l5 = levels_by_name(central)["L5"].instance
    assert all(instances[n, 275, FRONT:BACK].tolist() == [l5] * (BACK - FRONT) for n in range(SLICES))


def test_two_bodies_merged_on_lateral_slices_are_split_back():
    """On the two right-most slices the L4/L5 disc is labelled as vertebra: L4 and L5 form one
    component, split at the middle of the former disc."""
    labels = stacked()
    start, stop = DISC_ROWS["L4/L5"]
    for n in (SLICES - 2, SLICES - 1):
        labels[n, start:stop, FRONT:BACK] = VB
    central = central_levels(labels)
    instances = propagate_levels(central, labels, CENTRE)
    named = levels_by_name(central)
    l4, l5, disc = named["L4"].instance, named["L5"].instance, named["L4/L5"].instance
    for n in (SLICES - 2, SLICES - 1):
        columns = slice(FRONT, BACK)
        assert (instances[n, BODY_ROWS["L4"][0]:start + 5, columns] == l4).all()
        assert (instances[n, start + 5:BODY_ROWS["L5"][1], columns] == l5).all()
        assert not (instances[n] == disc).any()
    assert (instances[SLICES - 3, start:stop, FRONT:BACK] == disc).all()


def test_per_slice_measurements_match_the_synthetic_sizes(drifting, monkeypatch):
    labels, central, instances = drifting
    measured = []
    measure = volume_levels.measure_report
    monkeypatch.setattr(volume_levels, "measure_report", lambda *args: measured.append(measure(*args)) or measured[-1])
    heatmap = np.full(labels.shape, 0.5, np.float32)
    rows = measure_slices(central, instances, labels, heatmap, 1.0, range(100, 100 + SLICES))
    assert all(entry.lines and entry.centroid for report in measured for entry in report.bottom_up())
    assert len(rows) == SLICES * len(NAMES_BOTTOM_UP)
    for n in range(SLICES):
        on_slice = [row for row in rows if row["model_slice"] == n]
        assert [row["name"] for row in on_slice] == NAMES_BOTTOM_UP
        depth = BACK - FRONT - (8 if abs(n - CENTRE) >= 3 else 0)
        for row in on_slice:
            assert row["slice_index"] == 100 + n and not {"lines_px", "centroid_px"} & set(row)
            assert not [value for value in row.values() if isinstance(value, (list, tuple, dict, np.ndarray))]
            assert row["kind"] == ("disc" if "/" in row["name"] else "vertebra")
            size = 10 if row["kind"] == "disc" else 25
            for key in ("anterior_height_mm", "middle_height_mm", "posterior_height_mm"):
                assert abs(row[key] - size) <= 1, (n, row)
            assert row["mean_uncertainty"] == pytest.approx(0.5)
            if row["kind"] == "vertebra":
                assert abs(row["depth_mm"] - depth) <= 1, (n, row)
            else:
                assert abs(row["height_index"] - 10 / depth) < 0.03
    assert [n for n in range(SLICES) for row in rows if row["model_slice"] == n] == [row["model_slice"] for row in rows]


def test_levels_absent_from_a_slice_are_left_out_of_its_rows():
    labels = stacked(3)
    start, stop = BODY_ROWS["L1"]
    labels[2, start:stop, FRONT:BACK] = 0
    central = find_levels(labels[1], np.full(labels.shape[1:], 50.0, np.float32))
    instances = propagate_levels(central, labels, 1)
    rows = measure_slices(central, instances, labels, None, 1.0, [7, 8, 9])
    names = {n: [row["name"] for row in rows if row["slice_index"] == n] for n in (7, 8, 9)}
    assert names[7] == names[8] == NAMES_BOTTOM_UP
    assert names[9] == NAMES_BOTTOM_UP[:-1]


def test_slice_rows_csv_has_the_union_of_columns(tmp_path, drifting):
    labels, central, instances = drifting
    rows = measure_slices(central, instances, labels, None, 1.0, range(SLICES))
    path = tmp_path / "slice_levels.csv"
    write_slice_levels_csv(rows, path)
    with open(path, newline="") as stream:
        read = list(csv.DictReader(stream))
    assert len(read) == len(rows)
    assert list(read[0])[:5] == ["slice_index", "model_slice", "name", "kind", "from_bottom"]
    assert {"depth_mm", "height_index", "dural_sac_ap_diameter_mm"} <= set(read[0])
    disc = next(row for row in read if row["kind"] == "disc")
    assert disc["depth_mm"] == "" and float(disc["middle_height_mm"]) == pytest.approx(10, abs=1)


def test_propagation_is_deterministic_and_fast():
    labels = stacked(15)
    for n in range(15):
        shift_anterior_column(labels[n], abs(n - 7), 0)
    labels[12:, 255:265, FRONT:BACK] = VB
    central = find_levels(labels[7], np.full(labels.shape[1:], 50.0, np.float32))
    started = time.perf_counter()
    first = propagate_levels(central, labels, 7)
    elapsed = time.perf_counter() - started
    assert np.array_equal(first, propagate_levels(central, labels.copy(), 7))
    assert elapsed < 1.0, elapsed


def test_a_centre_outside_the_volume_is_refused():
    labels = stacked(3)
    central = find_levels(labels[1])
    with pytest.raises(ValueError, match="centre"):
        propagate_levels(central, labels, 3)


def test_spider_sample_levels_reach_the_adjacent_slices():
    from SpineSegDiffLib.inference.preprocess import labels_to_model_space, to_model_space

    folder = REPO / "Resources" / "Samples" / "spider_t2_sample"
    image, geometry = to_model_space(sitk.ReadImage(str(folder / "image.nii.gz")), "all")
    labels = labels_to_model_space(sitk.Cast(sitk.ReadImage(str(folder / "mask.nii.gz")), sitk.sitkUInt8), geometry)
    centre = len(labels) // 2
    central = find_levels(labels[centre], image[centre])
    instances = propagate_levels(central, labels, centre)
    named = [level for level in (*central.vertebrae, *central.discs) if not level.missing]
    discs = {level.instance for level in central.discs if not level.missing}
    assert len(named) >= 8
    for n in (centre - 1, centre + 1):
        for level in named:
            shared = (instances[n] == level.instance) & central.mask(level)
            assert shared.sum() >= 0.5 * central.mask(level).sum(), (n, level.name)
    for n in range(len(labels)):
        assert len(set(np.unique(instances[n])) & discs) <= len(discs)
        assert set(np.unique(instances[n])) <= discs | {level.instance for level in named} | {0}
    rows = measure_slices(central, instances, labels, None, 1.0, geometry.slice_indices)
    assert {row["name"] for row in rows if row["model_slice"] == centre} == {level.name for level in named}

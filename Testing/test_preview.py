"""The preview PNG: segments on the left, heatmap on the right, drawn without a plotting library."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

from SpineSegDiffLib.labels import by_key
from SpineSegDiffLib.outputs.preview import GAP_PIXELS, INFERNO, write_preview


def test_preview_shows_segments_and_heatmap_side_by_side(tmp_path):
    image = np.full((1, 40, 30), 100.0, np.float32)
    labels = np.zeros((1, 40, 30), np.uint8)
    labels[0, 10:20, 5:15] = by_key("VB").value
    heat = np.zeros((1, 40, 30), np.float32)
    heat[0, 30:35, 20:25] = 1.0
    result = SimpleNamespace(model_image=image, model_labels=labels, model_uncertainty=heat)
    write_preview(result, tmp_path / "p.png")
    picture = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "p.png"))).astype(int)
    assert picture.shape == (40, 2 * 30 + GAP_PIXELS, 3)
    grey = round(100 / 255 * 255)
    assert (picture[0, 0] == grey).all(), "unlabelled pixels stay grey"
    vb = np.round(255 * (0.45 * 100 / 255 + 0.55 * np.asarray(by_key("VB").color))).astype(int)
    assert np.abs(picture[15, 10] - vb).max() <= 1
    right = picture[:, 30 + GAP_PIXELS:]
    expected_hot = np.round(255 * (0.2 * 100 / 255 + 0.8 * INFERNO[-1])).astype(int)
    assert np.abs(right[32, 22] - expected_hot).max() <= 1
    assert (right[5, 5] == grey).all(), "certain pixels are not coloured"


def test_level_names_are_written_anterior_to_their_level_and_nowhere_else(tmp_path):
    image = np.full((1, 60, 80), 100.0, np.float32)
    labels = np.zeros((1, 60, 80), np.uint8)
    labels[0, 20:40, 50:70] = by_key("VB").value
    level_labels = np.zeros((1, 60, 80), np.int32)
    level_labels[0, 20:40, 50:70] = 4
    heat = np.zeros((1, 60, 80), np.float32)
    plain = SimpleNamespace(model_image=image, model_labels=labels, model_uncertainty=heat)
    named = SimpleNamespace(**vars(plain), model_level_labels=level_labels,
                            levels={"vertebrae": [{"name": "L4", "label_value": 4}], "discs": []})
    write_preview(plain, tmp_path / "plain.png")
    write_preview(named, tmp_path / "named.png")
    before, after = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{n}.png"))).astype(int)
                     for n in ("plain", "named"))
    changed = np.argwhere(np.abs(after - before).max(axis=-1) > 0)
    assert len(changed) > 10, "the name is drawn"
    rows, columns = changed[:, 0], changed[:, 1]
    assert rows.min() >= 20 and rows.max() < 40, "at the level's height"
    assert columns.max() < 50, "anterior to (left of) the level, not over it or on the heatmap panel"

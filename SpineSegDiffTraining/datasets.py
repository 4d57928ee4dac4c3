"""Labelled datasets: SPIDER's own layout and a plain folder of cases, as one list of :class:`Case`.

Both are mapped to SpineSegDiff's label table (``SpineSegDiffLib.labels``): 1 SC, 2 VB, 3 IVD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.labels import by_key


@dataclass(frozen=True)
class Case:
    """One labelled series.

    Attributes:
        case_id: unique series name.
        patient_id: the patient; splits never separate series of one patient.
        image: path of the image volume.
        mask: path of the label volume.
        layout: ``"spider"`` (SPIDER label values) or ``"folder"`` (already 0..3).
    """

    case_id: str
    patient_id: str
    image: Path
    mask: Path
    layout: str

    def read(self) -> tuple[sitk.Image, sitk.Image]:
        """The image and its labelmap in SpineSegDiff label values (uint8)."""
        image = sitk.ReadImage(str(self.image))
        mask = sitk.ReadImage(str(self.mask))
        if self.layout == "spider":
            mask = map_spider_labels(mask)
        return image, sitk.Cast(mask, sitk.sitkUInt8)


def map_spider_labels(mask: sitk.Image) -> sitk.Image:
    """SPIDER values -> ours: 1-25 and 101-125 (vertebrae) -> VB, 100 -> SC, 201-225 -> IVD."""
    values = sitk.GetArrayViewFromImage(mask)
    mapped = np.zeros(values.shape, np.uint8)
    mapped[((values >= 1) & (values <= 25)) | ((values >= 101) & (values <= 125))] = by_key("VB").value
    mapped[values == 100] = by_key("SC").value
    mapped[(values >= 201) & (values <= 225)] = by_key("IVD").value
    result = sitk.GetImageFromArray(mapped)
    result.CopyInformation(mask)
    return result


def load_folder_dataset(root: str | Path) -> list[Case]:
    """``root/<case>/image.nii.gz`` + ``mask.nii.gz``; each case is its own patient."""
    root = Path(root)
    cases = [
        Case(folder.name, folder.name, folder / "image.nii.gz", folder / "mask.nii.gz", "folder")
        for folder in sorted(root.iterdir())
        if (folder / "image.nii.gz").is_file() and (folder / "mask.nii.gz").is_file()
    ]
    if not cases:
        raise SpineSegDiffError(f"no <case>/image.nii.gz + mask.nii.gz pairs under {root}")
    return cases


SPIDER_NAME = re.compile(r"^(?P<patient>\d+)_(?P<sequence>t1|t2|t2_SPACE)\.mha$")


def load_spider_dataset(root: str | Path, sequences: tuple[str, ...] = ("t2",)) -> list[Case]:
    """SPIDER's ``images/<id>_<sequence>.mha`` and ``masks/`` with the same names."""
    root = Path(root)
    cases = []
    for image in sorted((root / "images").glob("*.mha")):
        match = SPIDER_NAME.match(image.name)
        mask = root / "masks" / image.name
        if match and match["sequence"] in sequences and mask.is_file():
            cases.append(Case(image.stem, match["patient"], image, mask, "spider"))
    if not cases:
        raise SpineSegDiffError(f"no SPIDER images/<id>_{{{','.join(sequences)}}}.mha with masks under {root}")
    return cases


def load_dataset(root: str | Path) -> list[Case]:
    """Detect the layout: SPIDER if ``root/images`` and ``root/masks`` exist, else a case folder."""
    root = Path(root)
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return load_spider_dataset(root)
    return load_folder_dataset(root)

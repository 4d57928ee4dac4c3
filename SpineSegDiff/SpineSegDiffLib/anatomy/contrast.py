"""Whether a slice looks T2-weighted, from the segmentation itself: the grader was trained on T2 only.

On T2-weighted images the CSF of the dural sac is brighter than the vertebrae (on the 33 SPIDER T2 series the
median canal intensity is 1.09 to 3.51 times the vertebrae's, median 1.75); on T1-weighted images it is darker.
A slice whose canal is darker than :data:`MIN_CANAL_TO_VERTEBRA` times its vertebrae is taken for a T1-like
contrast and its discs are not graded (the grades say why). A heuristic, not a sequence check: images with
fat or fluid suppression, or an input whose header is lost (NIfTI), are judged by contrast alone; a slice with
too little canal or vertebra to compare is not refused.
"""

from __future__ import annotations

import numpy as np

from ..labels import by_key

MIN_CANAL_TO_VERTEBRA = 0.8
"""Least ratio of the canal's median intensity to the vertebrae's at which a slice counts as T2-like."""
MIN_PIXELS = 50
"""Fewer canal or vertebra pixels than this: the contrast is not judged."""


def canal_to_vertebra(image: np.ndarray, labels: np.ndarray) -> float | None:
    """Median intensity of the spinal canal over that of the vertebrae on ``image`` ``(H, W)`` with ``labels``
    ``(H, W)``; None when either has fewer than :data:`MIN_PIXELS` pixels or the vertebrae are black."""
    canal, vertebrae = image[labels == by_key("SC").value], image[labels == by_key("VB").value]
    if canal.size < MIN_PIXELS or vertebrae.size < MIN_PIXELS or np.median(vertebrae) <= 0:
        return None
    return float(np.median(canal) / np.median(vertebrae))


def not_t2(image: np.ndarray, labels: np.ndarray) -> str | None:
    """Why the slice's discs are not graded (its contrast is not T2-like), or None."""
    ratio = canal_to_vertebra(image, labels)
    if ratio is None or ratio >= MIN_CANAL_TO_VERTEBRA:
        return None
    return (f"the image does not look T2-weighted (the spinal canal is {ratio:.2f} times as bright as the vertebrae; "
            "on T2 the CSF is brighter): the grader was trained on T2 images only")

"""Sample Data registration of the bundled SPIDER sample (a sagittal T2 lumbar MRI series).

The file is installed with the extension in ``<lib/Slicer-X.Y>/Resources/Samples`` (the top-level
CMakeLists.txt), one level above the module's folder, as in the source tree. Sample Data loads it
from there through a ``file:`` URI and checks its SHA256.
"""

from __future__ import annotations

from pathlib import Path

CATEGORY = "SpineSegDiff"
SAMPLE_NAME = "SpineSegDiffSpiderT2"
NODE_NAME = "SPIDER 005 T2 sagittal"
SAMPLE_RELATIVE_PATH = Path("Resources", "Samples", "spider_t2_sample", "image.nii.gz")
SAMPLE_SHA256 = "8030810da7eb784a9021c58e92c27d1d641dfaab7e53a3ebf4f064246a252d5c"
ATTRIBUTION = ("Lumbar spine T2 (SPIDER 005)\nvan der Graaf et al., Sci Data 11:264 (2024),\n"
               "doi:10.1038/s41597-024-03090-w, CC BY 4.0")
"""Shown under the thumbnail in Sample Data: what the volume is, its source and licence (CC BY 4.0 asks for it)."""


def sample_path(module_dir: Path) -> Path:
    """The bundled sample next to the folder holding ``SpineSegDiff.py`` (installed or source tree)."""
    return Path(module_dir).parent / SAMPLE_RELATIVE_PATH


def sample_source_arguments(module_dir: Path) -> dict:
    """Keyword arguments of Slicer's ``SampleData.SampleDataSource`` for the bundled sample."""
    module_dir = Path(module_dir)
    return {
        "sampleName": SAMPLE_NAME,
        "sampleDescription": ATTRIBUTION,
        "uris": sample_path(module_dir).resolve().as_uri(),
        "fileNames": SAMPLE_RELATIVE_PATH.name,
        "nodeNames": NODE_NAME,
        "checksums": f"SHA256:{SAMPLE_SHA256}",
        "thumbnailFileName": str(module_dir / "Resources" / "Icons" / "SpineSegDiff.png"),
        "loadFileTypes": "VolumeFile",
    }


def register(sample_data_module, module_dir: Path) -> bool:
    """Add the sample to Sample Data's ``CATEGORY`` (once); False when the sample is not installed.

    ``sample_data_module`` is Slicer's ``SampleData`` module (passed in, so this runs without Slicer in tests).
    """
    if not sample_path(module_dir).is_file():
        return False
    logic = sample_data_module.SampleDataLogic
    source = sample_data_module.SampleDataSource(**sample_source_arguments(module_dir))
    if not logic.isSampleDataSourceRegistered(CATEGORY, source):
        logic.sampleDataSourcesByCategory().setdefault(CATEGORY, []).append(source)
    return True

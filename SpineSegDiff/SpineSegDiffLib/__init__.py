"""SpineSegDiff core: lumbar spine MRI segmentation with diffusion refinement and uncertainty."""

__version__ = "0.1.0"

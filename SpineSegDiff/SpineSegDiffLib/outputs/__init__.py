"""Writing results: one writer and naming rule for every entry point (``writer``), Slicer's ``.seg.nrrd``,
DICOM SEG and the preview picture."""

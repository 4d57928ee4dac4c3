"""From labels to a reading: vertebra and disc instances, level naming, measurements, levels through a
volume, disc grading, and the level report that gathers them."""

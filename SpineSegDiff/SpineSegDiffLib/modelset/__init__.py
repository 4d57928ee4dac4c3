"""Model folders: their format and checksums (``folder``), the settings they declare, parsed once
(``settings``), and the set of models a run uses (``model_set``). Nothing here imports torch."""

"""The entry points on the core: the batch engine and its cases, the ``spinesegdiff`` CLI, and the worker
process the Slicer module talks to (its protocol in ``protocol``, standard library only)."""

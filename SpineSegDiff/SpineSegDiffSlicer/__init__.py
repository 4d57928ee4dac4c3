"""The module side of SpineSegDiff: MRML <-> core conversions and the client of the worker process.

Everything that imports ``slicer``, ``qt``, ``vtk`` or ``ctk`` lives here; the core
(``SpineSegDiffLib``, the pip package) never imports them.
"""

"""A pipeline-shaped package, written the way pipelines against the reference implementation are.

It subclasses ``CalibrationStore`` and overrides every step of registration,
has a data model whose ``save()`` honours only ``output_dir`` and names its own
file, and selectors that call ``db.rows_where`` with orderings that tie. It
imports only what such pipelines import.
"""

"""Comparing variants: paired bootstrap differences, the paper's tables, and the controls.

``compare_variants`` is the ``compare`` stage (all evaluated variants against the baseline);
``macvr compare`` compares any two evaluation directories or ``dvc exp`` runs; ``macvr seeds``
summarises a set of experiments as mean ± sd.
"""

from pipeline.compare.config import BootstrapSettings, CompareConfig
from pipeline.compare.paired import compare_results
from pipeline.compare.run import compare_variants

__all__ = ["BootstrapSettings", "CompareConfig", "compare_results", "compare_variants"]

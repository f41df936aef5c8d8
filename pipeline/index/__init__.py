"""Large-gallery search: an ANN shortlist over a query-independent video vector, re-ranked exactly.

See :mod:`pipeline.index.shortlist` (the two-stage index) and :mod:`pipeline.index.ann` (the
approximate nearest-neighbour backends). Nothing heavy is imported here.
"""

from pipeline.index.ann import ANN_BACKENDS, AnnConfig
from pipeline.index.shortlist import (DEFAULT_CANDIDATES, DEFAULT_THRESHOLD, EMBEDDINGS, ShortlistConfig,
                                      ShortlistIndex, use_shortlist)

__all__ = ["ANN_BACKENDS", "AnnConfig", "DEFAULT_CANDIDATES", "DEFAULT_THRESHOLD", "EMBEDDINGS",
           "ShortlistConfig", "ShortlistIndex", "use_shortlist"]

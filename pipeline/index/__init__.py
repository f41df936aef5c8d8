"""Large-gallery search: an ANN shortlist over a query-independent video vector, re-ranked exactly.

See :mod:`pipeline.index.shortlist` (the two-stage index), :mod:`pipeline.index.ann` (the
approximate nearest-neighbour backends) and :mod:`pipeline.index.config` (``params.yaml: search``).
Nothing is imported here until a name is used (PEP 562), so reading the params section's config
does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"ANN_BACKENDS": "ann", "AnnConfig": "ann", "DEFAULT_CANDIDATES": "shortlist",
          "DEFAULT_THRESHOLD": "shortlist", "EMBEDDINGS": "shortlist", "ShortlistConfig": "shortlist",
          "ShortlistIndex": "shortlist", "use_shortlist": "shortlist"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'pipeline.index' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipeline.index.{_NAMES[name]}"), name)

"""Inference strategies (re-scoring before ranking), discovered through :data:`STRATEGIES`.

Built-ins: ``none`` (raw scores), ``dsl`` (dual softmax), ``qb`` (QB-Norm). A new strategy is a
new module here plus one import line below (see ``base.py``).
"""

from pipeline.retrieval.strategies.base import (DIRECTIONS, STRATEGIES, Direction, NoParams, Rescored, Strategy,
                                                register_strategy)
# Built-in strategies register themselves on import (one line each).
from pipeline.retrieval.strategies import identity  # noqa: F401  none
from pipeline.retrieval.strategies import dual_softmax  # noqa: F401  dsl
from pipeline.retrieval.strategies import querybank_norm  # noqa: F401  qb
from pipeline.retrieval.strategies.dual_softmax import DSLParams, dsl
from pipeline.retrieval.strategies.querybank_norm import (QBDirection, QBParams, qb_norm, qb_norm_with_info,
                                                          querybank_activation)

__all__ = ["DIRECTIONS", "DSLParams", "Direction", "NoParams", "QBDirection", "QBParams", "Rescored",
           "STRATEGIES", "Strategy", "dsl", "qb_norm", "qb_norm_with_info", "querybank_activation",
           "register_strategy"]

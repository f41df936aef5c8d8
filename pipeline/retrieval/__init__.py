"""Retrieval evaluation: ground-truth ranks, R@k/MdR/MnR, and the DSL / QB-Norm strategies.

``evaluate_all`` is the one-call entry point; ``command.metrics`` is the ``macvr metrics`` CLI
(not imported here, so importing the library does not pull in typer).
"""

from pipeline.retrieval.evaluation import (MACVR_REFERENCE, DSLConfig, QBNormConfig, RetrievalConfig,
                                           TiedGroundTruthWarning, evaluate_all, strategy_ranks)
from pipeline.retrieval.metrics import (METRIC_KEYS, RECALL_KS, TIE_POLICIES, TiePolicy, check_scores,
                                        rank_metrics, ranks_t2v, ranks_v2t)
from pipeline.retrieval.strategies import dsl, qb_norm, querybank_activation

__all__ = [
    "DSLConfig", "MACVR_REFERENCE", "METRIC_KEYS", "QBNormConfig", "RECALL_KS", "RetrievalConfig",
    "TIE_POLICIES", "TiePolicy", "TiedGroundTruthWarning", "check_scores", "dsl", "evaluate_all",
    "qb_norm", "querybank_activation", "rank_metrics", "ranks_t2v", "ranks_v2t", "strategy_ranks",
]

"""Retrieval evaluation: ground-truth ranks, R@k/MdR/MnR, and the registered inference strategies.

``evaluate_all`` / ``rank_all`` are the entry points; strategies live in
:mod:`pipeline.retrieval.strategies` (registry :data:`STRATEGIES`); ``command.metrics`` is the
``macvr metrics`` CLI (not imported here, so importing the library does not pull in typer).
"""

from pipeline.retrieval.evaluation import (RankedRetrieval, RetrievalConfig, TiedGroundTruthWarning, evaluate_all,
                                           rank_all, reference_config, strategy_label, strategy_ranks)
from pipeline.retrieval.metrics import (METRIC_KEYS, RECALL_KS, TIE_POLICIES, TiePolicy, check_scores,
                                        official_rank_list, rank_metrics, ranks_t2v, ranks_v2t)
from pipeline.retrieval.strategies import (DIRECTIONS, STRATEGIES, DSLParams, QBDirection, QBParams, dsl, qb_norm,
                                           querybank_activation)

__all__ = [
    "DIRECTIONS", "DSLParams", "METRIC_KEYS", "QBDirection", "QBParams", "RECALL_KS", "RankedRetrieval",
    "RetrievalConfig", "STRATEGIES", "TIE_POLICIES", "TiePolicy", "TiedGroundTruthWarning", "check_scores", "dsl",
    "evaluate_all", "official_rank_list", "qb_norm", "querybank_activation", "rank_all", "rank_metrics",
    "ranks_t2v", "ranks_v2t", "reference_config", "strategy_label", "strategy_ranks",
]

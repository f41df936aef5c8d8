"""The evaluate stage: exact pairwise scoring of the test split, QB-Norm querybanks, metrics,
recall@K plots and per-query ranks (see :mod:`pipeline.evaluation.run` for the outputs).

Public API::

    EvaluateConfig                                   # params.yaml: evaluate
    evaluate(config, variant, model_path, features_dir, out_dir, metrics_path, plots_dir, ...)
    select_rows(videos_index, captions_index, querybank_size) -> EvalRows
"""

from pipeline.evaluation.config import EvaluateConfig
from pipeline.evaluation.items import EvalRows, select_rows
from pipeline.evaluation.run import EvaluateError, evaluate

__all__ = ["EvalRows", "EvaluateConfig", "EvaluateError", "evaluate", "select_rows"]

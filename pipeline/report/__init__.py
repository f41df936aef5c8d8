"""The report stage: tag histograms, concept t-SNE, qualitative rank changes, metrics tables.

Public API::

    ReportConfig                                            # params.yaml: report
    build_report(config, tags_path, eval_dir, models_dir, features_dir, captions_path, out, frames_dir=None)
"""

from pipeline.report.build import ReportError, build_report
from pipeline.report.config import QualitativeConfig, ReportConfig, TsneConfig

__all__ = ["QualitativeConfig", "ReportConfig", "ReportError", "TsneConfig",
           "build_report"]

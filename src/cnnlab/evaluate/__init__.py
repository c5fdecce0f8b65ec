"""Evaluation: metrics from one prediction array, factor analysis, ``metrics.json``."""

from cnnlab.evaluate.evaluation import (
    Evaluation,
    evaluate_run,
    result_files,
    summary_lines,
    transfer_name,
)
from cnnlab.evaluate.factors import decode, describe_difference, factor_analysis
from cnnlab.evaluate.metrics import classification_metrics, confusion_matrix, scores_from_confusion

__all__ = [
    "Evaluation",
    "classification_metrics",
    "confusion_matrix",
    "decode",
    "describe_difference",
    "evaluate_run",
    "factor_analysis",
    "result_files",
    "scores_from_confusion",
    "summary_lines",
    "transfer_name",
]

"""Evaluation: how good is the judge on labelled data, per set, modality, direction, category.

    from omniguard_plugins import OmniGuard
    from omniguard_plugins.eval import load_dataset, evaluate, write_report

    items = load_dataset("xstest") + load_dataset("figstep_flash_video", limit=20)
    report = evaluate(OmniGuard.shared(), items, out_dir="runs/today")
    write_report(report, "runs/today")

Only the judge's public API is used (``check_many`` with per-item policy and direction), so any
backend works: in process, ``omniguard serve`` or vLLM through ``OMNIGUARD_URL``.
"""

from __future__ import annotations

from .compare import Comparison, compare_predictions, compare_runs
from .datasets import DATASETS, DatasetInfo, data_root, load_dataset
from .derived import MediaMaker, espeak_available
from .items import EvalItem, sample
from .loaders import load_file
from .policy_test import PolicyTest, policy_test
from .predictions import Prediction, read_predictions
from .render import write_report
from .runner import evaluate
from .summary import EvalReport, summarize

__all__ = [
    "DATASETS",
    "Comparison",
    "DatasetInfo",
    "EvalItem",
    "EvalReport",
    "MediaMaker",
    "PolicyTest",
    "Prediction",
    "compare_predictions",
    "compare_runs",
    "data_root",
    "espeak_available",
    "evaluate",
    "load_dataset",
    "load_file",
    "policy_test",
    "read_predictions",
    "sample",
    "summarize",
    "write_report",
]

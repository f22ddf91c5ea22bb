"""Throughput and latency harness (``omniguard bench``). Speed lives here, never in tests."""

from .harness import BenchResult, Workload, run_bench

__all__ = ["BenchResult", "Workload", "run_bench"]

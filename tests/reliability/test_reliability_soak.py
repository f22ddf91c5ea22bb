"""The short soak `make test` runs: a real server at 2x and 10x its capacity for a few seconds
each, with faults mixed in. Correctness invariants are asserted; latency figures are printed
(they are measured, on a quiet machine, by `make soak`: see RELIABILITY.md)."""

from __future__ import annotations

import pytest

from tests.support.soak import Settings, run_soak, violations


@pytest.mark.timeout(120)
def test_a_short_soak_with_faults_keeps_every_invariant():
    report = run_soak(Settings(duration_s=6.0, unloaded_requests=10), [2.0, 10.0])
    figures = {p["load"]: {k: p[k] for k in ("requests", "faults", "rejected", "blocked_by_error", "mixed_up",
                                             "p99_admitted_ms", "p99_rejected_ms")} for p in report["phases"]}
    print(f"short soak: unloaded p99 {report['unloaded_p99_ms']} ms; {figures}; RSS +{report['rss_growth_mb']} MB")
    assert violations(report, timing=False) == [], report["log_tail"]
    for phase in report["phases"]:
        assert phase["requests"] > 50 and phase["faults"] > 0 and phase["answered"] > 0
    assert report["phases"][1]["rejected"] > 0  # 10x overload was shed, not queued

"""Helpers shared by the tests, importable as ``tests.support.<module>`` from the repository root.

Every test imports its helpers from here (pytest's ``pythonpath = ["."]`` puts the root on ``sys.path``;
subprocesses get it through ``PYTHONPATH``), so no test edits ``sys.path`` and no two folders can shadow
each other's helpers. What lives here:

- processes on loopback: ``serve_helpers`` (``omniguard serve``), ``door_helpers`` (the guard, the upstream
  LLM, the LiteLLM proxy), ``upstream_app`` (the scripted OpenAI-compatible upstream), ``lc_upstream``,
  ``demo_helpers`` (demo apps served for the browser tests), ``fresh_doors`` (door scripts in fresh processes);
- scripted backends loaded by ``--backend-factory tests.support.<module>:NAME``: ``serve_backends``,
  ``door_backends``, ``reliability_backends``; ``scripted_eval`` (``omniguard eval`` on a scripted judge);
- media made in the test: ``media_factory``, ``door_media``, ``evidence_cases``, ``live_helpers``,
  ``oa_helpers``, ``nemo_helpers``;
- scripted models for stream tests: ``stream_helpers``, ``lc_stream_models``, ``li_stream_models``,
  ``li_agent_models``; ``reliability_helpers``;
- runnable measurements (``python -m tests.support.<name>``, ``make soak``): ``soak``, ``burst``,
  ``long_and_short``.
"""

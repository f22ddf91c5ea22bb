"""Runnable demo apps that show OmniGuard's rails working on real text, images, audio and video.

- ``python -m demo_apps.omni_chat``: a web chat (LangChain agent, input and output rails,
  streaming) with a verdict on every turn and a settings panel. ``make demo`` runs it.
- ``python -m demo_apps.rag_guard``: a LlamaIndex multimodal index whose retrieved nodes and
  answers are judged; the page shows which nodes were dropped and why.
- ``python -m demo_apps.nemo_bot``: a NeMo Guardrails bot on the shipped OmniGuard rails (CLI chat).

Each app judges with ``OMNIGUARD_URL`` (a running ``omniguard serve``) or ``OMNIGUARD_MODEL``,
and, where no model can be had, with the tiny plumbing checkpoint under a banner that its
verdicts are not real (:func:`omniguard_plugins.demo.demo_judge`).
"""

import os as _os

# the apps show their own output; transformers' config warnings are noise to a demo's user
_os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

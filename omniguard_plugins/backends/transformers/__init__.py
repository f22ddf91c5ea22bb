"""The in-process transformers backend, a package by stage. Imports point down:

``backend`` (:class:`TransformersBackend`, grouping, OOM splitting) uses ``labels`` (score and
label-first decisions), ``decoding`` (the greedy loop; ``static_decode`` for CUDA graphs),
``prefill`` (policy-prefix KV; ``media_features`` for cached tower outputs), ``encoding``
(processor and collate), ``thinker`` (forward plumbing), ``loading``; ``fast_paths`` holds the
switches. Nothing here imports torch until a model is loaded.
"""

from .backend import TransformersBackend
from .fast_paths import SWITCHES, BenchKnobs, FastPaths

__all__ = ["SWITCHES", "BenchKnobs", "FastPaths", "TransformersBackend"]

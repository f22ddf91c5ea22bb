"""rag_guard: a guarded LlamaIndex multimodal RAG app (``python -m demo_apps.rag_guard``)."""

from __future__ import annotations

from .app import DATA_DIR, RagGuard, Report, create_app

__all__ = ["DATA_DIR", "RagGuard", "Report", "create_app"]

"""The public names are a promise: this test pins them."""

from __future__ import annotations

import importlib

import omniguard_plugins

EXPECTED = [
    "DEFAULT_CATEGORIES", "DEFAULT_MODEL", "Audio", "BackendError", "Category", "ConfigError", "ContentError",
    "Conversation", "CorruptMedia", "GuardViolation", "Image", "JudgeConfig", "JudgeTimeout", "MediaError",
    "MediaFetchRefused", "MediaLimits", "MediaTooLarge", "ModelLoadError", "OmniGuard", "OmniGuardError", "Part",
    "Policy", "Text", "Turn", "UnsupportedMedia", "Verdict", "Video", "__version__",
]


def test_all_is_pinned() -> None:
    assert omniguard_plugins.__all__ == EXPECTED
    for name in EXPECTED:
        assert hasattr(omniguard_plugins, name)


def test_py_typed_is_shipped() -> None:
    from importlib import resources

    for pkg in ("omniguard_plugins", "langchain_omniguard", "llama_index_omniguard", "nemoguardrails_omniguard"):
        assert resources.files(pkg).joinpath("py.typed").is_file(), pkg


def test_importing_the_core_does_not_import_frameworks_or_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, omniguard_plugins; "
        "heavy = [m for m in ('torch', 'transformers', 'langchain_core', 'llama_index', 'nemoguardrails') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_adapter_packages_import() -> None:
    for pkg in ("langchain_omniguard", "llama_index_omniguard", "nemoguardrails_omniguard"):
        importlib.import_module(pkg)

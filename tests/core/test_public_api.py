"""The public names are a promise: this test pins them."""

from __future__ import annotations

import importlib

import omniguard_plugins

EXPECTED = [
    "DEFAULT_CATEGORIES", "DEFAULT_MODEL", "Audio", "BackendError", "Category", "ConfigError", "ContentError",
    "Conversation", "CorruptMedia", "GuardViolation", "Image", "JudgeConfig", "JudgeTimeout", "MediaError",
    "MediaFetchRefused", "MediaLimits", "MediaTooLarge", "ModelLoadError", "OmniGuard", "OmniGuardError",
    "OverloadedError", "Part", "Policy", "Text", "TextTooLarge", "Turn", "UnsupportedMedia", "Verdict", "Video",
    "__version__",
]

#: the core modules adapters build on are public too: their names are pinned the same way
MODULES = {
    "omniguard_plugins.streaming": ["Judge", "Read", "StreamRail", "StreamSettings", "Window", "amoderate",
                                    "background_loop", "moderate", "output_judge", "read_text"],
    "omniguard_plugins.rails": ["DEFAULT_REFUSAL", "STAGES", "Stage", "refusal_text"],
    "omniguard_plugins.doors": ["DEFAULT_REFUSAL", "STAGES", "Action", "Ask", "Blocking", "Decision", "RailSession",
                                "Stage", "VerdictSummary", "refusal_text", "render_tool_call", "summarize",
                                "violation"],
    "omniguard_plugins.verdict": ["LABEL_PREFIX", "Evidence", "EvidenceKind", "Mode", "Verdict", "parse_output",
                                  "truncate_to_verdict"],
    "omniguard_plugins.content": ["Audio", "Conversation", "Image", "MediaPart", "Origin", "Part", "Role", "Text",
                                  "Turn", "Video"],
    "omniguard_plugins.openai_messages": ["conversation_from_openai", "parts_from_openai"],
    "omniguard_plugins.backends.base": ["Backend", "BaseBackend", "GenerationRequest", "GenerationResult"],
    "omniguard_plugins.live": ["LiveInputError", "LiveOutput", "LiveSession", "LiveSettings", "LiveStats",
                               "LiveVerdict", "OnBlock", "PcmStream", "Ring", "TARGET_RATE", "live_blocking", "to_pil"],
    "omniguard_plugins.answer_format": None,
    "omniguard_plugins.testing": None,  # checked below: every name importable
}


#: every adapter package the distribution ships (each its own import name, with py.typed)
ADAPTERS = ("langchain_omniguard", "llama_index_omniguard", "nemoguardrails_omniguard", "litellm_omniguard",
            "openai_agents_omniguard", "pipecat_omniguard", "livekit_omniguard")

#: the adapters' public names, pinned like the core's
ADAPTER_APIS = {
    "langchain_omniguard": ["GuardViolation", "GuardedRunnable", "OmniGuardMiddleware", "OmniGuardRunnable",
                            "VERDICT_EVENT", "guard", "to_conversation"],
    "nemoguardrails_omniguard": ["INPUT_ACTION", "INPUT_EXCEPTION", "INPUT_FLOW", "JUDGE_PARAM", "OUTPUT_ACTION",
                                 "OUTPUT_EXCEPTION", "OUTPUT_FLOW", "RAILS_DIR", "RAILS_DIR_V2", "REFUSAL",
                                 "STREAM_SETTINGS_KEY", "TOOL_INPUT_ACTION", "TOOL_INPUT_EXCEPTION", "TOOL_INPUT_FLOW",
                                 "TOOL_OUTPUT_ACTION", "TOOL_OUTPUT_EXCEPTION", "TOOL_OUTPUT_FLOW",
                                 "TOOL_PASSED_ACTION",
                                 "TOOL_RESUME_FLOW", "V2_ANSWER_FLOW", "blocked_chunk", "omniguard_check_input",
                                 "omniguard_check_output", "omniguard_check_tool_input", "omniguard_check_tool_output",
                                 "omniguard_passed_tool_calls", "outcome_from_verdict", "register", "stream"],
    "llama_index_omniguard": ["GuardViolation", "GuardedChatEngine", "GuardedQueryEngine",
                              "GuardedStreamingChatResponse", "ON_BLOCK", "OmniGuardLLM", "OmniGuardPostprocessor",
                              "answer_parts", "message_parts", "node_parts", "query_parts"],
    "litellm_omniguard": ["GuardedStream", "LocalChecker", "OmniGuardGuardrail", "OmniGuardViolation",
                          "RemoteChecker", "acompletion", "completion"],
    "openai_agents_omniguard": ["ON_UNSAFE", "OnUnsafe", "guarded_events", "input_conversation", "omniguard_input",
                                "omniguard_input_guardrail", "omniguard_output", "omniguard_output_guardrail",
                                "omniguard_tool_input", "omniguard_tool_input_guardrail", "omniguard_tool_output",
                                "omniguard_tool_output_guardrail", "output_parts", "tool_output_parts"],
    "pipecat_omniguard": ["LiveInputError", "LiveSession", "LiveSettings", "LiveVerdict", "OmniGuardProcessor"],
    "livekit_omniguard": ["LiveInputError", "LiveSession", "LiveSettings", "LiveVerdict", "OmniGuardAgent",
                          "OmniGuardAgentMixin"],
}


def test_all_is_pinned() -> None:
    assert omniguard_plugins.__all__ == EXPECTED
    for name in EXPECTED:
        assert hasattr(omniguard_plugins, name)


def test_module_apis_are_pinned() -> None:
    for name, expected in {**MODULES, **ADAPTER_APIS}.items():
        module = importlib.import_module(name)
        if expected is not None:
            assert sorted(module.__all__) == sorted(expected), name
        for public in module.__all__:
            assert hasattr(module, public), (name, public)


def test_py_typed_is_shipped() -> None:
    from importlib import resources

    for pkg in ("omniguard_plugins", *ADAPTERS):
        assert resources.files(pkg).joinpath("py.typed").is_file(), pkg


def test_importing_the_core_does_not_import_frameworks_or_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, omniguard_plugins; "
        "heavy = [m for m in ('torch', 'transformers', 'langchain_core', 'llama_index', 'nemoguardrails', 'ray',"
        " 'pipecat', 'livekit', 'agents', 'litellm')"
        " if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_adapter_packages_import() -> None:
    for pkg in ADAPTERS:
        importlib.import_module(pkg)

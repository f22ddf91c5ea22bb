"""OmniGuard for LiveKit Agents: hooks that judge the user's turn before the LLM and the LLM's
text before it is spoken.

```python
from livekit.agents import AgentSession
from livekit_omniguard import OmniGuardAgent

session = AgentSession(stt=..., llm=..., tts=..., vad=...)
await session.start(OmniGuardAgent(instructions="You are a helpful voice assistant."), room=ctx.room)
```
"""

from __future__ import annotations

from omniguard_plugins.live import LiveInputError, LiveSession, LiveSettings, LiveVerdict

from .agent import OmniGuardAgent, OmniGuardAgentMixin

__all__ = ["LiveInputError", "LiveSession", "LiveSettings", "LiveVerdict", "OmniGuardAgent", "OmniGuardAgentMixin"]

"""OmniGuard for pipecat: one ``FrameProcessor`` that judges a live voice and video pipeline.

```python
from pipecat_omniguard import OmniGuardProcessor

guard_in, guard_out = OmniGuardProcessor.pair()   # one live session, OmniGuard.shared()
pipeline = Pipeline([transport.input(), stt, guard_in, user_aggregator, llm, guard_out, tts,
                     transport.output(), assistant_aggregator])
```
"""

from __future__ import annotations

from omniguard_plugins.live import LiveInputError, LiveSession, LiveSettings, LiveVerdict

from .processor import OmniGuardProcessor

__all__ = ["LiveInputError", "LiveSession", "LiveSettings", "LiveVerdict", "OmniGuardProcessor"]

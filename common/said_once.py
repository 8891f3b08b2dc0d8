"""Words a process meets again and again (a server away, asked at every request or retry), said
once, then again at most once a minute with how often they were met meanwhile. Shared by
/health's log (schedules.api.health) and Flower's broker lines (common.flower_words)."""

from __future__ import annotations

import threading
import time

# The same words are said again at most this often (project.beat's RedisAway folds alike).
SAY_AGAIN_SECONDS = 60.0
# Distinct words kept at most: past it, what was said is forgotten, and said again.
KEPT = 100


class SaidOnce:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.said: dict[str, list[float]] = {}  # words: [when said, times met since]

    def again(self, words: str) -> str | None:
        """None when `words` were said less than SAY_AGAIN_SECONDS ago (they are counted), else
        what to say after them: how often they were met since they were said last, if ever."""
        now = time.monotonic()
        with self.lock:
            said = self.said.get(words)
            if said is not None and now - said[0] < SAY_AGAIN_SECONDS:
                said[1] += 1
                return None
            if len(self.said) > KEPT:
                self.said.clear()
            self.said[words] = [now, 0]
        if said and said[1]:
            return f" (met {said[1]} times more in the last {now - said[0]:.0f} s)"
        return ""

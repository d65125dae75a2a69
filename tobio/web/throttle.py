"""Throttling wrong tokens at the login page: per client address, and for all clients together.

A client may get FREE_TRIES wrong in a row; after that each further try must wait twice as long as
the last (0.5 s, 1 s, 2 s … up to MAX_WAIT_S), and a try made too early is refused without being
checked, so guessing costs time whatever the guesser's speed. A right token clears the client's
record. Across all clients, more than GLOBAL_FAILURES wrong tokens within GLOBAL_WINDOW_S make every
client wait a little (a guesser with many addresses). Memory is bounded: at most MAX_CLIENTS records.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

FREE_TRIES = 5
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 300.0
GLOBAL_FAILURES = 100
GLOBAL_WINDOW_S = 60.0
GLOBAL_WAIT_S = 5.0
MAX_CLIENTS = 10_000


class LoginThrottle:
    """Who must wait before the next login try, and for how long."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (failures, next allowed)
        self._recent: deque[float] = deque()  # times of wrong tokens, all clients
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """Seconds `client` must still wait before a try is even checked (0: go ahead)."""
        now = self.clock()
        with self._lock:
            while self._recent and self._recent[0] < now - GLOBAL_WINDOW_S:
                self._recent.popleft()
            crowd = GLOBAL_WAIT_S if len(self._recent) >= GLOBAL_FAILURES else 0.0
            if crowd:
                crowd = max(0.0, self._recent[-1] + GLOBAL_WAIT_S - now)
            _, allowed = self._clients.get(client, (0, 0.0))
            return max(0.0, allowed - now, crowd)

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            failures, _ = self._clients.pop(client, (0, 0.0))
            failures += 1
            wait = 0.0 if failures < FREE_TRIES else min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (failures - FREE_TRIES))
            self._clients[client] = (failures, now + wait)
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
            self._recent.append(now)
            while len(self._recent) > GLOBAL_FAILURES * 2:
                self._recent.popleft()

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

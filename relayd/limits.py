"""Per-client limits shared by all sessions: connection counts, AUTH failure throttling, greeting passes.

Clients are keyed by address, except that IPv6 clients are keyed by their /64: one host
usually holds a whole /64, so a per-address limit would be no limit at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from relayd.matcher import Address


def client_key(address: Address) -> str:
    """Return the key a client's limits are counted under."""
    if address.version == 4:
        return str(address)
    return f"{Address(6, address.value >> 64 << 64)}/64"


class ConnectionLimiter:
    """Count the open sessions of each client and refuse one past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        """Count a new session of key; return False (counting nothing) if key is at the limit."""
        count = self._open.get(key, 0)
        if count >= self.limit:
            return False
        self._open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        """Forget one session of key."""
        count = self._open.pop(key) - 1
        if count:
            self._open[key] = count


class AuthThrottle:
    """Slow down, then refuse, a client whose AUTH attempts keep failing.

    After slow_after failures each further failure is answered after a delay that doubles from
    delay up to 16 times delay (a tarpit); at refuse_after failures the client may not try AUTH
    again until window seconds have passed since its last failure.
    """

    def __init__(
        self,
        slow_after: int,
        refuse_after: int,
        delay: float,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slow_after = slow_after
        self.refuse_after = refuse_after
        self.delay = delay
        self.window = window
        self.clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, time of the last failure)

    def failures(self, key: str) -> int:
        """Return the failures of key that still count."""
        count, last = self._failures.get(key, (0, 0.0))
        if count and self.clock() - last > self.window:
            del self._failures[key]
            return 0
        return count

    def refused(self, key: str) -> bool:
        """Return whether key has failed too often to try AUTH now."""
        return self.failures(key) >= self.refuse_after

    def fail(self, key: str) -> float:
        """Record a failure of key and return how long to wait before answering it."""
        count = self.failures(key) + 1
        now = self.clock()
        self._failures[key] = (count, now)
        if len(self._failures) > 100_000:
            # A flood from many addresses must not grow this without bound: forget the stale.
            self._failures = {k: v for k, v in self._failures.items() if now - v[1] <= self.window}
        if count <= self.slow_after:
            return 0.0
        return self.delay * 2.0 ** min(count - self.slow_after - 1, 4)


class GreetPasses:
    """Remember the clients that waited for the greeting, so they are not made to wait again for ttl seconds."""

    def __init__(self, ttl: float, capacity: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self.clock = clock
        self._passed: dict[str, float] = {}  # key -> expiry, oldest first

    def passed(self, key: str) -> bool:
        """Return whether key passed the greeting test less than ttl seconds ago."""
        expires = self._passed.get(key)
        return expires is not None and expires > self.clock()

    def remember(self, key: str) -> None:
        """Record that key waited for the greeting."""
        self._passed.pop(key, None)
        self._passed[key] = self.clock() + self.ttl
        if len(self._passed) > self.capacity:
            del self._passed[next(iter(self._passed))]


class SessionLimits(Protocol):
    """What a session asks of the client limits: ClientLimits in relayd's process, relayd.hub.ParentLink in a worker."""

    async def admit(self, key: str) -> tuple[str | None, bool]: ...

    def release(self, key: str) -> None: ...

    def greet_passed(self, key: str) -> None: ...

    async def auth_refused(self, key: str) -> bool: ...

    async def auth_failed(self, key: str) -> tuple[float, int]: ...


class ClientLimits:
    """Every limit on clients that all intake workers share: connections (per client and in all), AUTH, greeting.

    The parent process holds the one instance; intake workers reach it through relayd.hub, so
    that N workers enforce the same limits as one process would, not N times looser ones. The
    methods that answer are coroutines because a worker has to ask the parent for the answer.
    """

    def __init__(
        self, max_connections: int, per_client: int, auth_throttle: AuthThrottle, greet_passes: GreetPasses
    ) -> None:
        self.max_connections = max_connections
        self.connections = ConnectionLimiter(per_client)
        self.auth_throttle = auth_throttle
        self.greet_passes = greet_passes
        self.open = 0  # sessions of all clients together, in every worker

    def admit_now(self, key: str) -> tuple[str | None, bool]:
        """Count a new session of key; return (the reason it is refused or None, whether key holds a greeting pass)."""
        if self.open >= self.max_connections:
            return "max_connections", False
        if not self.connections.acquire(key):
            return "too_many_connections", False
        self.open += 1
        return None, self.greet_passes.passed(key)

    async def admit(self, key: str) -> tuple[str | None, bool]:
        """Count a new session of key, as admit_now."""
        return self.admit_now(key)

    def release(self, key: str) -> None:
        """Forget one admitted session of key."""
        self.connections.release(key)
        self.open -= 1

    def greet_passed(self, key: str) -> None:
        """Record that key waited for the greeting."""
        self.greet_passes.remember(key)

    async def auth_refused(self, key: str) -> bool:
        """Return whether key has failed AUTH too often to try now."""
        return self.auth_throttle.refused(key)

    def auth_failed_now(self, key: str) -> tuple[float, int]:
        """Record an AUTH failure of key; return the tarpit delay and the failures that count."""
        delay = self.auth_throttle.fail(key)
        return delay, self.auth_throttle.failures(key)

    async def auth_failed(self, key: str) -> tuple[float, int]:
        """Record an AUTH failure of key, as auth_failed_now."""
        return self.auth_failed_now(key)

"""Count what each relay profile holder relays per hour: in Redis for a fleet, else in this process.

The window is the clock hour (fixed window, as Exim's and Postfix's anvil counters are per
interval): simple, and the same on every node without any protocol of our own. Its known cost is
that a sender may use one hour's limit at the end of it and the next at the start.

With Redis, every node takes from the same counter, in one atomic script. Without it, or while
Redis is unreachable, each node counts alone, so a fleet of N nodes then allows up to N times the
limit (docs/relayd.md). A counter outage never stops mail: the local count takes over, logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from relayd.logs import kv

if TYPE_CHECKING:
    import redis.asyncio
    from redis.commands.core import AsyncScript

log = logging.getLogger("relayd.counters")

WINDOW = 3600  # seconds: the limits are per hour
# After a Redis failure, the local count is used for this long before Redis is tried again, so an
# outage costs one timeout per interval rather than one per recipient.
RETRY_AFTER = 30.0
REDIS_TIMEOUT = 0.5

# Add amount unless that would pass the limit (ARGV[2], 0 for none); return {taken, count}.
_TAKE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[2])
if limit > 0 and current + tonumber(ARGV[1]) > limit then
  return {0, current}
end
current = redis.call('INCRBY', KEYS[1], ARGV[1])
if current == tonumber(ARGV[1]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {1, current}
"""


class Take(NamedTuple):
    """The result of counting: whether it was within the limit, and the count this hour."""

    taken: bool
    total: int  # not count, which would hide tuple.count
    shared: bool  # counted in Redis, for the whole fleet


class LocalCounters:
    """Per-hour counters of this process alone."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._window = -1
        self._counts: dict[str, int] = {}

    def _current(self) -> dict[str, int]:
        window = int(self._clock() // WINDOW)
        if window != self._window:
            self._window, self._counts = window, {}
        return self._counts

    def take(self, key: str, amount: int, limit: int | None) -> Take:
        """Add amount to key's count unless that would pass limit (None: no limit)."""
        counts = self._current()
        current = counts.get(key, 0)
        if limit is not None and current + amount > limit:
            return Take(False, current, False)
        counts[key] = current + amount
        return Take(True, current + amount, False)

    def peek(self, key: str) -> int:
        return self._current().get(key, 0)


class Counters:
    """The counters relayd takes from: Redis when configured and reachable, else LocalCounters."""

    def __init__(self, redis_url: str | None, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.local = LocalCounters(clock)
        self._clock = clock
        self._prefix = prefix
        self._redis: redis.asyncio.Redis | None = None
        self._script: AsyncScript | None = None
        self._down_until = 0.0
        self._down = False
        if redis_url is not None:
            import redis.asyncio  # only nodes that share counters need the package loaded

            self._redis = redis.asyncio.Redis.from_url(
                redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
            self._script = self._redis.register_script(_TAKE)

    @property
    def shared(self) -> bool:
        """Return whether counts are currently shared with the fleet."""
        return self._redis is not None and not self._down

    async def take(self, key: str, amount: int, limit: int | None) -> Take:
        """Count amount for key this hour unless that would pass limit; never raise for a counter outage."""
        if self._script is not None and time.monotonic() >= self._down_until:
            window = int(self._clock() // WINDOW)
            try:
                taken, count = await self._script(
                    keys=[f"{self._prefix}:{window}:{key}"], args=[amount, limit or 0, 2 * WINDOW]
                )
            except Exception as exc:  # any Redis or socket failure: count locally, never stop mail
                self._went_down(exc)
            else:
                if self._down:
                    self._down = False
                    log.warning(kv(event="counters_shared", backend="redis", detail="Redis is reachable again"))
                return Take(bool(taken), int(count), True)
        return self.local.take(key, amount, limit)

    def _went_down(self, error: Exception) -> None:
        self._down_until = time.monotonic() + RETRY_AFTER
        if not self._down:
            self._down = True
            log.error(
                kv(
                    event="counters_local",
                    backend="redis",
                    error=f"{type(error).__name__}: {error}",
                    detail="Redis unreachable: counting on this node alone until it is back",
                )
            )

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

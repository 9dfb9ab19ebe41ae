"""A rate limit shared by every worker process of every host: requests and tokens per minute,
kept in Redis, enforced by one atomic Lua script.

Providers limit an account (requests and tokens per minute), not a worker; Celery's own
rate_limit is per worker. Before each request to the model (instructor's re-asks included) a
worker asks Redis for a slot: the script reserves the earliest send time that keeps

* the window: never more than the limit in any window of `window_s` seconds (the per-minute
  figures scaled to it), counted on a log of the slots handed out, with their tokens;
* the pace: at most `burst_s` seconds' worth of the limit at once, then evenly spaced (GCRA),
  so that the window's budget is not spent in its first second (providers often enforce
  per-minute limits over shorter intervals).

and returns how long to wait for it; the caller sleeps that long, then sends. One Redis call
per request, no polling, first come first served. The clock is Redis's (TIME), so hosts whose
clocks disagree still share one schedule; slots are handed out in time order.

A token count cannot be known before the answer: the estimate is the prompt (the backend's
conservative count) plus max_tokens, as providers reserve it. A request larger than the whole
window's token budget goes alone, once the window is empty.

If Redis cannot be reached the call goes ahead (and is logged): the provider's 429s, retried
with backoff by the pipeline, remain the backstop.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# KEYS: state hash, slot log (sorted set: score = send time in microseconds, member
# "<seq>:<tokens>"). ARGV: requests per window (0: none), tokens per window (0: none), window
# in microseconds, request burst, token burst, tokens of this request.
# Returns {wait, requests in the window at the slot, tokens held by the log, the slot's time},
# times in microseconds (the slot's on Redis's clock).
_SCRIPT = """
local state, slots = KEYS[1], KEYS[2]
local max_requests = tonumber(ARGV[1])
local max_tokens = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local burst_requests = tonumber(ARGV[4])
local burst_tokens = tonumber(ARGV[5])
local cost = tonumber(ARGV[6])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local function tokens_of(member)
  return tonumber(string.match(member, ':(%d+)$')) or 0
end

-- Forget the slots that left the window.
local fields = redis.call('HMGET', state, 'tat_r', 'tat_t', 'last', 'tokens')
local tat_r = tonumber(fields[1]) or 0
local tat_t = tonumber(fields[2]) or 0
local last = tonumber(fields[3]) or 0
local in_window = tonumber(fields[4]) or 0
local old = redis.call('ZRANGEBYSCORE', slots, '-inf', now - window)
if #old > 0 then
  for _, member in ipairs(old) do
    in_window = in_window - tokens_of(member)
  end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now - window)
end
if in_window < 0 then in_window = 0 end

local at = math.max(now, last)
local count = redis.call('ZCARD', slots)

if max_requests > 0 then
  -- The window: the (count - max + 1)th oldest slot must have left it.
  if count >= max_requests then
    local slot = redis.call('ZRANGE', slots, count - max_requests, count - max_requests,
      'WITHSCORES')
    at = math.max(at, tonumber(slot[2]) + window)
  end
  -- The pace: a bucket of burst_requests, refilled one per window / max_requests.
  local interval = window / max_requests
  at = math.max(at, tat_r - (burst_requests - 1) * interval)
end

if max_tokens > 0 then
  local need = in_window + cost - max_tokens
  if need > 0 then
    -- The oldest slots must leave the window until this request's tokens fit; a request
    -- bigger than the whole budget waits for an empty window.
    local freed, index, step, done, slot_at = 0, 0, 128, false, nil
    while not done do
      local batch = redis.call('ZRANGE', slots, index, index + step - 1, 'WITHSCORES')
      if #batch == 0 then break end
      for i = 1, #batch, 2 do
        freed = freed + tokens_of(batch[i])
        slot_at = tonumber(batch[i + 1])
        if freed >= need then
          done = true
          break
        end
      end
      index = index + step
    end
    if slot_at then at = math.max(at, slot_at + window) end
  end
  local per_token = window / max_tokens
  local fits = math.min(cost, burst_tokens)
  at = math.max(at, tat_t - (burst_tokens - fits) * per_token)
end

-- Reserve the slot.
if max_requests > 0 then
  tat_r = math.max(tat_r, at) + window / max_requests
end
if max_tokens > 0 then
  tat_t = math.max(tat_t, at) + cost * window / max_tokens
end
local seq = redis.call('HINCRBY', state, 'seq', 1)
redis.call('ZADD', slots, at, seq .. ':' .. cost)
in_window = in_window + cost
redis.call('HSET', state, 'tat_r', string.format('%.0f', tat_r), 'tat_t',
  string.format('%.0f', tat_t), 'last', string.format('%.0f', at), 'tokens', in_window)
local ttl = math.ceil((math.max(at, tat_r, tat_t) - now + window) / 1000) + 1000
redis.call('PEXPIRE', state, ttl)
redis.call('PEXPIRE', slots, ttl)
local requests = redis.call('ZCOUNT', slots, '(' .. string.format('%.0f', at - window), '+inf')
return {at - now, requests, in_window, at}
"""


@dataclass(frozen=True)
class Reservation:
    """A slot: wait `wait_s` before sending. For metrics and tests: `requests`, the window's
    count at the slot (this one included); `tokens`, the tokens of the slots not yet out of
    the window; `at`, the slot's time on Redis's clock (Unix seconds)."""

    wait_s: float
    requests: int
    tokens: int
    at: float


class RateLimiter:
    """Requests and tokens per minute for one shared budget (`key`), in Redis.

    `acquire(tokens)` blocks until this request may be sent. Thread-safe; any number of
    processes and hosts share the budget through `key`.
    """

    def __init__(
        self,
        redis_client: Any,
        key: str,
        *,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        window_s: float = 60.0,
        burst_s: float = 5.0,
        margin_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not requests_per_minute and not tokens_per_minute:
            raise ValueError("a rate limit needs requests_per_minute or tokens_per_minute")
        if window_s <= 0 or burst_s < 0:
            raise ValueError("window_s must be > 0 and burst_s >= 0")
        self.key = key
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.window_s = window_s
        self.burst_s = burst_s
        # Slots are spaced by the window plus this margin: a request reaches the provider a
        # little after its slot (scheduling, the client's own work), by varying amounts.
        self.margin_s = default_margin(window_s) if margin_s is None else margin_s
        self.max_requests = _scaled(requests_per_minute, window_s)
        self.max_tokens = _scaled(tokens_per_minute, window_s)
        self.burst_requests = max(1, min(self.max_requests, _scaled(requests_per_minute, burst_s)))
        self.burst_tokens = min(self.max_tokens, _scaled(tokens_per_minute, burst_s))
        self._redis = redis_client
        self._script = redis_client.register_script(_SCRIPT)
        self._sleep = sleep
        self._warned_at = 0.0
        self._warn_lock = threading.Lock()

    @property
    def counts_tokens(self) -> bool:
        return self.max_tokens > 0

    def reserve(self, tokens: int = 0) -> Reservation:
        """Reserve the next slot for a request of `tokens` (estimated); returns the wait."""
        wait_us, requests, in_window, at_us = self._script(
            keys=[f"{self.key}:state", f"{self.key}:slots"],
            args=[
                self.max_requests,
                self.max_tokens,
                int(round((self.window_s + self.margin_s) * 1_000_000)),
                self.burst_requests,
                self.burst_tokens,
                max(0, int(tokens)) if self.max_tokens else 0,
            ],
        )
        return Reservation(
            max(0.0, int(wait_us) / 1_000_000), int(requests), int(in_window), int(at_us) / 1e6
        )

    def acquire(self, tokens: int = 0) -> float:
        """Block until a request of `tokens` (estimated) may be sent; returns the seconds
        waited. If Redis cannot be reached, does not wait (logged, at most once a minute)."""
        try:
            wait = self.reserve(tokens).wait_s
        except Exception as exc:  # redis.RedisError and OSError: fail open, not stop calls
            self._warn(exc)
            return 0.0
        if wait > 0:
            self._sleep(wait)
        return wait

    def _warn(self, exc: Exception) -> None:
        with self._warn_lock:
            now = time.monotonic()
            if self._warned_at and now - self._warned_at < 60:
                return
            self._warned_at = now
        log.warning(
            "rate limiter unavailable: calls go unlimited until Redis is back",
            extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"},
        )

    @classmethod
    def from_settings(cls, settings: Any, *, base_url: str, model: str) -> RateLimiter | None:
        """The limiter the settings ask for, or None (no limit set)."""
        section = settings.ratelimit
        if not section.requests_per_minute and not section.tokens_per_minute:
            return None
        url = section.redis_url or settings.broker.url
        if not url or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "the rate limit needs Redis: set CALLX_RATELIMIT__REDIS_URL "
                "(or use a redis:// broker)"
            )
        import redis

        pool = redis.BlockingConnectionPool.from_url(url, max_connections=32, timeout=20)
        return cls(
            redis.Redis(connection_pool=pool),
            section.key or default_key(base_url, model),
            requests_per_minute=section.requests_per_minute,
            tokens_per_minute=section.tokens_per_minute,
            window_s=section.window_s,
            burst_s=section.burst_s,
            margin_s=section.margin_s,
        )


def default_margin(window_s: float) -> float:
    """A twentieth of the window, at most 1 s (60 s windows: 1.7% of the budget)."""
    return min(1.0, window_s / 20)


def default_key(base_url: str, model: str) -> str:
    """One budget per endpoint and model (hashed: a URL can hold anything)."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\n{model}".encode()).hexdigest()[:16]
    return f"callx:ratelimit:{digest}"


def _scaled(per_minute: int | None, seconds: float) -> int:
    """The per-minute figure over `seconds`, rounded down (0: no limit)."""
    return int(math.floor(per_minute * seconds / 60 + 1e-9)) if per_minute else 0

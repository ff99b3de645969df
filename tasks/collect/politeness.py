"""Politeness: robots.txt (disallow, crawl-delay, sitemaps) and the per-host concurrency and delay between requests.

A site that disallows our user agent is never fetched: that is the opt-out of the mission's ethics step. robots.txt
follows RFC 9309 (`tasks.collect.robots`): a 4xx answer means no rules (crawl), a 5xx or an unreachable server means
complete disallow for this crawl; Crawl-delay is honoured up to `max_delay_s`. Hosts the user allow-listed as their own private hosts (the demo's loopback site) are not throttled
beyond what their robots.txt asks, everything else waits `min_delay_s` between requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tasks.collect.fetch import Fetcher
from tasks.collect.robots import MAX_ROBOTS_BYTES, RobotsRules, check_agent_token


@dataclass
class _Host:
    sem: asyncio.Semaphore
    delay: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_at: float = 0.0
    robots: RobotsRules | str | None = None  # rules, or an error kind meaning "disallow"
    robots_ready: asyncio.Event = field(default_factory=asyncio.Event)
    robots_started: bool = False


class Politeness:
    """Implements `tasks.collect.fetch.Gatekeeper` for the crawler; `fetcher` is attached after construction."""

    def __init__(self, agent_token: str, min_delay_s: float, per_host_concurrency: int, own_hosts: set[str],
                 own_host_concurrency: int, on_sitemaps: Callable[[list[str]], None] | None = None,
                 max_delay_s: float = 60.0) -> None:
        self.agent, self.min_delay, self.per_host = check_agent_token(agent_token), min_delay_s, per_host_concurrency
        self.max_delay = max_delay_s
        self.own_hosts, self.own_concurrency, self.on_sitemaps = own_hosts, own_host_concurrency, on_sitemaps
        self.fetcher: Fetcher | None = None
        self.hosts: dict[str, _Host] = {}
        self.robots_fetches = 0

    def _host(self, host: str) -> _Host:
        host = host.lower()
        if host not in self.hosts:
            own = host in self.own_hosts
            self.hosts[host] = _Host(asyncio.Semaphore(self.own_concurrency if own else self.per_host),
                                     0.0 if own else self.min_delay)
        return self.hosts[host]

    async def allowed(self, url: str) -> str:
        """"" when robots.txt lets us fetch `url`; "robots_denied", or the error that kept us from reading it."""
        parts = urlsplit(url)
        state = self._host(parts.hostname or "")
        if not state.robots_started:
            state.robots_started = True
            try:
                await self._load_robots(f"{parts.scheme}://{parts.netloc}/robots.txt", state)
            finally:
                state.robots_ready.set()
        await state.robots_ready.wait()
        if isinstance(state.robots, str):
            return state.robots
        if state.robots is None or state.robots.allowed(url):
            return ""
        return "robots_denied"

    async def _load_robots(self, robots_url: str, state: _Host) -> None:
        assert self.fetcher is not None, "Politeness.fetcher must be set before crawling"
        self.robots_fetches += 1
        result = await self.fetcher.fetch(robots_url, robots=False, accept=("",), prefix_bytes=MAX_ROBOTS_BYTES)
        if result.outcome == "fetched" and result.status == 200:
            state.robots = RobotsRules.parse(result.body, self.agent, self.max_delay)
            if state.robots.crawl_delay is not None:
                state.delay = max(state.delay, state.robots.crawl_delay)  # honoured even for our own hosts
            if self.on_sitemaps and state.robots.sitemaps:
                self.on_sitemaps(state.robots.sitemaps)
        elif result.error_kind.startswith("http_4") and result.error_kind != "http_429":
            state.robots = None  # RFC 9309: robots.txt unavailable (4xx) means no restrictions
            # 429 is the server asking us to slow down, not saying there are no rules: treated like 5xx below
        elif result.outcome == "error" and result.error_kind.startswith("http_"):
            state.robots = "robots_unavailable"  # 5xx: assume complete disallow
        elif result.outcome in ("blocked_address", "robots_denied"):
            state.robots = result.outcome
        else:
            state.robots = result.error_kind or result.outcome  # unreachable: assume complete disallow

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold one of the host's connections, starting no sooner than its delay after the previous request."""
        state = self._host(host)
        async with state.sem:
            async with state.lock:
                wait = state.next_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                state.next_at = time.monotonic() + state.delay
            yield

    def penalize(self, host: str, seconds: float) -> None:
        state = self._host(host)
        state.next_at = max(state.next_at, time.monotonic() + seconds)

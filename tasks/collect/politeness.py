"""Politeness: robots.txt (disallow, crawl-delay, sitemaps) and the per-host concurrency and delay between requests.

A site that disallows our user agent is never fetched: that is the opt-out of the mission's ethics step. robots.txt
follows RFC 9309: a 4xx answer means no rules (crawl), a 5xx or an unreachable server means complete disallow for
this crawl. Hosts the user allow-listed as their own private hosts (the demo's loopback site) are not throttled
beyond what their robots.txt asks, everything else waits `min_delay_s` between requests.
"""

from __future__ import annotations

import asyncio
import time
import urllib.robotparser
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tasks.collect.fetch import Fetcher


@dataclass
class _Host:
    sem: asyncio.Semaphore
    delay: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_at: float = 0.0
    robots: urllib.robotparser.RobotFileParser | str | None = None  # parser, or an error kind meaning "disallow"
    robots_ready: asyncio.Event = field(default_factory=asyncio.Event)
    robots_started: bool = False


class Politeness:
    """Implements `tasks.collect.fetch.Gatekeeper` for the crawler; `fetcher` is attached after construction."""

    def __init__(self, agent_token: str, min_delay_s: float, per_host_concurrency: int, own_hosts: set[str],
                 own_host_concurrency: int, on_sitemaps: Callable[[list[str]], None] | None = None) -> None:
        self.agent, self.min_delay, self.per_host = agent_token, min_delay_s, per_host_concurrency
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
        if state.robots is None or state.robots.can_fetch(self.agent, url):
            return ""
        return "robots_denied"

    async def _load_robots(self, robots_url: str, state: _Host) -> None:
        assert self.fetcher is not None, "Politeness.fetcher must be set before crawling"
        self.robots_fetches += 1
        result = await self.fetcher.fetch(robots_url, robots=False, accept=("",))
        if result.outcome == "fetched" and result.status == 200:
            lines = result.body.decode("utf-8", errors="replace").splitlines()
            parser = urllib.robotparser.RobotFileParser(robots_url)
            parser.parse(lines)
            parser.modified()  # can_fetch() answers False until the parser has a timestamp
            state.robots = parser
            delay = crawl_delay(lines, self.agent)
            rate = parser.request_rate(self.agent)
            if rate is not None and rate.requests:
                delay = max(delay or 0.0, rate.seconds / rate.requests)
            if delay is not None:
                state.delay = max(state.delay, float(delay))  # honoured even for our own hosts
            if self.on_sitemaps and parser.site_maps():
                self.on_sitemaps(list(parser.site_maps() or []))
        elif result.error_kind.startswith("http_4"):
            state.robots = None  # RFC 9309: robots.txt unavailable (4xx) means no restrictions
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


def crawl_delay(lines: list[str], agent: str) -> float | None:
    """Crawl-delay of the group for `agent` (else `*`); urllib's parser drops fractional values like 0.5."""
    groups: list[tuple[list[str], float | None]] = []
    agents: list[str] = []
    delay: float | None = None
    in_rules = False
    for raw in lines:
        key, _, value = raw.split("#")[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            if in_rules:
                groups.append((agents, delay))
                agents, delay, in_rules = [], None, False
            agents.append(value.lower())
        elif key in ("allow", "disallow", "crawl-delay", "request-rate", "sitemap") and agents:
            in_rules = True
            if key == "crawl-delay":
                try:
                    delay = float(value)
                except ValueError:
                    continue
    groups.append((agents, delay))
    ours = [d for names, d in groups if any(n != "*" and n in agent for n in names)]
    anyone = [d for names, d in groups if "*" in names]
    chosen = ours or anyone
    return chosen[0] if chosen else None

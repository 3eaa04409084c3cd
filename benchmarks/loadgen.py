"""A bounded, loopback-only HTTP load generator (aiohttp, one event loop).

Closed loop: ``clients`` workers each send a request as soon as their previous one is answered. Open loop:
requests start at a fixed rate whatever the answers, so a slow service shows as latency, not as a lower rate.
Every run is bounded in time and in count; URLs off this machine are refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlparse

import numpy as np

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_REQUESTS = 200_000


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"the load generator only targets this machine (127.0.0.1), not {host}")


def summarise(latencies_s: list[float], statuses: list[int], seconds: float) -> dict:
    """p50 / p95 / p99 in ms, req/s, and error count (any status other than 200, or no answer)."""
    lat = np.asarray(latencies_s, dtype="float64") * 1000
    errors = sum(1 for s in statuses if s != 200)
    by_status: dict[str, int] = {}
    for s in statuses:
        by_status[str(s)] = by_status.get(str(s), 0) + 1
    return {
        "requests": len(statuses),
        "errors": errors,
        "statuses": by_status,
        "req_per_s": len(statuses) / seconds if seconds > 0 else float("nan"),
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p95_ms": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "seconds": seconds,
    }


async def _one(session, url: str, body: bytes, headers: dict) -> tuple[float, int]:
    import aiohttp

    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as reply:
            await reply.read()
            status = reply.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        status = 0
    return time.perf_counter() - started, status


def _session(connections: int):
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections, force_close=False),
                                 timeout=aiohttp.ClientTimeout(total=30))


async def _closed(url, make_body, headers, clients, seconds, max_requests):
    latencies, statuses = [], []
    deadline = time.perf_counter() + seconds
    async with _session(clients) as session:
        async def worker(k: int):
            n = 0
            while time.perf_counter() < deadline and len(statuses) < max_requests:
                elapsed, status = await _one(session, url, make_body(k, n), headers)
                latencies.append(elapsed)
                statuses.append(status)
                n += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        took = time.perf_counter() - started
    return summarise(latencies, statuses, took)


async def _open(url, make_body, headers, rate, seconds, max_requests):
    latencies, statuses = [], []
    total = min(int(rate * seconds), max_requests)
    async with _session(512) as session:
        started = time.perf_counter()

        async def fire(n: int):
            elapsed, status = await _one(session, url, make_body(0, n), headers)
            latencies.append(elapsed)
            statuses.append(status)

        tasks = []
        for n in range(total):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(n)))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - started
    out = summarise(latencies, statuses, took)
    out["target_rate"] = rate
    return out


def closed_loop(url: str, make_body: Callable[[int, int], bytes], headers: dict, *, clients: int, seconds: float,
                max_requests: int = MAX_REQUESTS) -> dict:
    """``clients`` closed-loop clients for ``seconds`` (at most ``max_requests`` requests)."""
    _check_loopback(url)
    return asyncio.run(_closed(url, make_body, headers, clients, seconds, max_requests))


def open_loop(url: str, make_body: Callable[[int, int], bytes], headers: dict, *, rate: float, seconds: float,
              max_requests: int = MAX_REQUESTS) -> dict:
    """Requests started at ``rate`` per second for ``seconds`` (at most ``max_requests``)."""
    _check_loopback(url)
    return asyncio.run(_open(url, make_body, headers, rate, seconds, max_requests))

#!/usr/bin/env python3
"""The Python peer for scripts/bench-client: a `vllm bench serve`-style asyncio + aiohttp
streaming client (vllm/benchmarks/lib/endpoint_request_func.py: iterate `resp.content` lines,
strip `data: `, json.loads each chunk), N closed-loop streams for S seconds against the mock SSE
server. Prints one JSON line like the Rust client.

Usage: bench_client_peer.py URL STREAMS SECONDS
"""

import asyncio
import json
import sys
import time

import aiohttp


async def worker(session, url, deadline, lags):
    events = 0
    payload = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    while time.monotonic() < deadline:
        async with session.post(url + "/v1/chat/completions", json=payload) as resp:
            async for chunk_bytes in resp.content:
                recv = time.time_ns()
                chunk_bytes = chunk_bytes.strip()
                if not chunk_bytes:
                    continue
                chunk = chunk_bytes.decode("utf-8").removeprefix("data: ")
                if chunk == "[DONE]":
                    break
                data = json.loads(chunk)
                if choices := data.get("choices"):
                    content = choices[0]["delta"].get("content")
                    if content:
                        lags.append((recv - int(content)) / 1e6)
                        events += 1
                if time.monotonic() >= deadline:
                    return events
    return events


async def main(url, streams, seconds):
    lags = []
    timeout = aiohttp.ClientTimeout(total=6 * 60 * 60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        deadline = time.monotonic() + seconds
        cpu0, t0 = time.process_time(), time.monotonic()
        counts = await asyncio.gather(*(worker(session, url, deadline, lags) for _ in range(streams)))
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    events = sum(counts)
    lags.sort()
    q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] if lags else float("nan")
    print(json.dumps({
        "client": "vllm-style aiohttp (python)",
        "streams": streams,
        "events": events,
        "seconds": wall,
        "events_per_s": events / wall,
        "cpu_us_per_event": cpu * 1e6 / max(events, 1),
        "lag_p50_ms": q(0.5),
        "lag_p99_ms": q(0.99),
    }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))

"""Load generator of the benchmarks: one asyncio process driving grok.com (direct) or grokproxy.

    .venv/bin/python bench/load.py --scenario nonstream --target direct \\
        --url http://127.0.0.1:5005 --tokens-file tokens.txt --concurrency 32 --duration 10

Runs in its own process so its CPU is never counted as the proxy's or the emulator's. Prints
one JSON object with the figures of the run on stdout.

- `nonstream`: closed loop of `concurrency` workers, each reading whole replies; requests/s and
  latency. Direct = the whole NDJSON body of conversations/new, proxied = a stream:false answer.
- `ttfb`: closed loop of streamed requests; time from sending to the first content byte (the
  first answer token direct, the first non-empty `delta.content` chunk proxied).
- `held`: `concurrency` streams opened together (ramped over `--ramp` seconds) and held to the
  end; every content chunk's arrival gap minus the emulator's pace (`--interval`) is an "extra
  gap". Direct extra gaps are the floor (emulator + this client); the proxy adds the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "grok-3"  # modeId "fast" in the modes dialect
DIRECT_PATH = "/rest/app-chat/conversations/new"
PROXY_PATH = "/v1/chat/completions"
DIRECT_CONTENT = b'{"result":{"response":{"token":"'
DIRECT_EMPTY = b'{"result":{"response":{"token":"",'
PROXY_CONTENT = b'"delta":{"content":"'
PROXY_EMPTY = b'"delta":{"content":""'


def direct_body(message: str) -> dict[str, Any]:
    """What grokproxy itself sends for MODEL in the `modes` dialect."""
    from grokproxy.grok.catalog import load_catalog
    from grokproxy.grok.payload import build_chat_body

    spec = load_catalog(None).get(MODEL)
    return build_chat_body(spec, "modes", message, temporary=True)


class Target:
    """How to send one chat to the emulator directly or through grokproxy."""

    def __init__(self, kind: str, url: str, tokens: list[str], api_key: str | None):
        self.kind = kind
        self.url = url.rstrip("/") + (DIRECT_PATH if kind == "direct" else PROXY_PATH)
        self.tokens = tokens
        self.api_key = api_key
        self._n = 0
        if kind == "direct":
            self._body = json.dumps(direct_body("benchmark request")).encode()

    def request(self, stream: bool) -> dict[str, Any]:
        """The keyword arguments of session.post for the next request."""
        self._n += 1
        if self.kind == "direct":
            token = self.tokens[self._n % len(self.tokens)]
            return {
                "data": self._body,
                "headers": {
                    "Content-Type": "application/json",
                    "Cookie": f"sso={token}; sso-rw={token}",
                },
            }
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "benchmark request"}],
            "stream": stream,
        }
        # A pool key rotates over the pool; without one each request carries a raw SSO token.
        bearer = self.api_key or self.tokens[self._n % len(self.tokens)]
        return {
            "data": json.dumps(body).encode(),
            "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"},
        }

    def is_content(self, line: bytes) -> bool:
        """Whether a line of the reply carries answer text."""
        if self.kind == "direct":
            return line.startswith(DIRECT_CONTENT) and not line.startswith(DIRECT_EMPTY)
        return PROXY_CONTENT in line and PROXY_EMPTY not in line

    def is_end(self, line: bytes) -> bool:
        """Whether a line marks a complete reply."""
        if self.kind == "direct":
            return b'"modelResponse"' in line
        return line.startswith(b"data: [DONE]")


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


async def nonstream(session, target: Target, concurrency: int, duration: float, warmup: float):
    latencies: list[float] = []
    errors: list[str] = []
    began = time.monotonic()
    count_from, stop_at = began + warmup, began + warmup + duration

    async def worker() -> None:
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            try:
                async with session.post(target.url, **target.request(stream=False)) as resp:
                    body = await resp.read()
                    ok = resp.status == 200 and (
                        b'"modelResponse"' in body
                        if target.kind == "direct"
                        else b'"chat.completion"' in body
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, body = False, repr(exc).encode()
            done = time.monotonic()
            if sent < count_from or done > stop_at:
                continue
            if ok:
                latencies.append(done - sent)
            else:
                errors.append(body[:200].decode(errors="replace"))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:3],
        "rps": round(len(latencies) / duration, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
    }


async def read_stream(session, target: Target, sent: float, on_content) -> tuple[bool, str]:
    """Read one streamed reply line by line; on_content(arrival) for each content line."""
    try:
        async with session.post(target.url, **target.request(stream=True)) as resp:
            if resp.status != 200:
                return False, f"HTTP {resp.status}: {(await resp.read())[:200]!r}"
            complete = False
            async for line in resp.content:
                if target.is_content(line):
                    on_content(time.monotonic())
                elif target.is_end(line):
                    complete = True
            return complete, "" if complete else "stream ended without its end mark"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, repr(exc)


async def ttfb(session, target: Target, concurrency: int, duration: float, warmup: float):
    firsts: list[float] = []
    errors: list[str] = []
    began = time.monotonic()
    count_from, stop_at = began + warmup, began + warmup + duration

    async def worker() -> None:
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            arrivals: list[float] = []
            ok, why = await read_stream(session, target, sent, arrivals.append)
            first = arrivals[:1]
            if sent < count_from or time.monotonic() > stop_at:
                continue
            if ok and first:
                firsts.append(first[0] - sent)
            else:
                errors.append(why or "no content")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "requests": len(firsts),
        "errors": len(errors),
        "error_samples": errors[:3],
        "rps": round(len(firsts) / duration, 1),
        "p50_ms": ms(percentile(firsts, 50)),
        "p99_ms": ms(percentile(firsts, 99)),
    }


async def held(session, target: Target, streams: int, interval: float, ramp: float):
    extra: list[float] = []
    firsts: list[float] = []
    errors: list[str] = []
    chunks = 0

    async def one(i: int) -> None:
        nonlocal chunks
        await asyncio.sleep(ramp * i / max(1, streams))
        sent = time.monotonic()
        arrivals: list[float] = []
        ok, why = await read_stream(session, target, sent, arrivals.append)
        if not ok:
            errors.append(why)
        if arrivals:
            firsts.append(arrivals[0] - sent)
        chunks += len(arrivals)
        extra.extend(max(0.0, b - a - interval) for a, b in itertools.pairwise(arrivals))

    began = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(streams)))
    return {
        "streams": streams,
        "completed": streams - len(errors),
        "errors": len(errors),
        "error_samples": errors[:3],
        "chunks": chunks,
        "wall_s": round(time.monotonic() - began, 1),
        "ttfb_p50_ms": ms(percentile(firsts, 50)),
        "gap_p50_ms": ms(percentile(extra, 50)),
        "gap_p99_ms": ms(percentile(extra, 99)),
        "gap_max_ms": ms(max(extra) if extra else None),
    }


async def main_async(args) -> dict[str, Any]:
    tokens = [t for t in Path(args.tokens_file).read_text().split() if t]
    target = Target(args.target, args.url, tokens, args.api_key)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if args.scenario == "nonstream":
            return await nonstream(session, target, args.concurrency, args.duration, args.warmup)
        if args.scenario == "ttfb":
            return await ttfb(session, target, args.concurrency, args.duration, args.warmup)
        return await held(session, target, args.concurrency, args.interval, args.ramp)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", choices=("nonstream", "ttfb", "held"), required=True)
    p.add_argument("--target", choices=("direct", "proxy"), required=True)
    p.add_argument("--url", required=True, help="emulator (direct) or grokproxy base URL")
    p.add_argument("--tokens-file", required=True, help="SSO tokens, one per line")
    p.add_argument("--api-key", help="grokproxy pool key (proxy target)")
    p.add_argument("--concurrency", type=int, default=32, help="workers, or streams for held")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    p.add_argument("--interval", type=float, default=0.05, help="emulator pace (held)")
    p.add_argument("--ramp", type=float, default=2.0, help="seconds to open every held stream")
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    figures = asyncio.run(main_async(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["client_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

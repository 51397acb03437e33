"""Load generator of the benchmarks: one asyncio process driving grok.com (direct) or grokproxy.

    .venv/bin/python bench/load.py --scenario nonstream --target direct \\
        --url http://127.0.0.1:5005 --tokens-file tokens.txt --concurrency 32 --duration 10

Runs in its own process so its CPU is never counted as the proxy's or the emulator's. Prints
one JSON object with the figures of the run on stdout.

- `nonstream`: closed loop of `concurrency` workers, each reading whole replies; requests/s and
  latency. Direct = the whole NDJSON body of conversations/new (or the whole gateway turn, to
  `response.done`), proxied = a stream:false answer.
- `ttfb`: closed loop of streamed requests; time from sending to the first content byte (the
  first answer token direct, the first non-empty `delta.content` chunk proxied).
- `held`: `concurrency` streams opened together (ramped over `--ramp` seconds) and held to the
  end; every content chunk's arrival gap minus the emulator's pace (`--interval`) is an "extra
  gap". Direct extra gaps are the floor (emulator + this client); the proxy adds the rest. A
  stream counts as open from its first content chunk to its end; `peak_open` is the most open
  at one moment (all of them when the server holds every stream at once, fewer when it queues).
  2,000 streams are 2,000 sockets (WebSockets direct over the gateway): the fd limit is raised
  to the hard limit at start.

`--transport` says how the direct target talks to the emulator: `http` posts to
conversations/new (the modes dialect), `gateway` opens one WebSocket per turn on `/ws/mgw/`
and speaks the mgw protocol with the very messages grokproxy sends (built by
grokproxy.grok.gateway), timed from before the connection opens, as grokproxy's own turn is.
The proxy target is the same OpenAI request either way (grokproxy's GROK_DIALECT decides).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import sys
import time
import uuid
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


class GatewayClient:
    """The emulator's mgw gateway spoken as grokproxy speaks it: one connection per turn."""

    def __init__(self, base_url: str, tokens: list[str]):
        from grokproxy.emulator.accounts import user_id_for
        from grokproxy.grok import gateway, mgw
        from grokproxy.grok.catalog import load_catalog
        from grokproxy.grok.settings import GrokSettings

        self._gateway = gateway
        self._answer_channel = mgw.ANSWER_CHANNEL
        self._settings = GrokSettings(base_url=base_url.rstrip("/"), dialect="gateway")
        self._model = str(load_catalog(None).get(MODEL).fields_for("gateway")["model"])
        # user_id_for is how the emulator names an account; grokproxy stores the same id at
        # batch-add (from the auth session), so both sides dial the same ?uid= address.
        self._accounts = [(token, user_id_for(token)) for token in tokens]
        self._n = 0

    def _next_turn(self):
        self._n += 1
        token, user_id = self._accounts[self._n % len(self._accounts)]
        turn = self._gateway.GatewayTurn(
            token=token,
            user_id=user_id,
            model=self._model,
            message="benchmark request",
            temporary=self._settings.temporary,
        )
        url = self._gateway.gateway_url(self._settings.base_url, user_id)
        headers = self._gateway.handshake_headers(self._settings, token, user_id)
        return turn, url, headers

    async def turn(self, session, on_content) -> tuple[bool, str]:
        """One whole turn; on_content(arrival) for each answer-text event."""
        gateway = self._gateway
        turn, url, headers = self._next_turn()
        session_id = str(uuid.uuid4())
        try:
            async with session.ws_connect(
                url,
                protocols=(gateway.SUBPROTOCOL,),
                headers=headers,
                compress=15,  # grokproxy offers permessage-deflate too
                max_msg_size=gateway.MAX_MESSAGE_BYTES,
                autoping=True,
                heartbeat=None,
            ) as ws:
                await ws.send_str(gateway.session_create(session_id, turn))
                attached = False
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    event = json.loads(msg.data).get("event") or {}
                    kind = event.get("type")
                    if kind == "conversation.attached":
                        attached = True
                        # grokproxy sends the item and response.create once attached.
                        await ws.send_str(gateway.item_create(session_id, turn))
                        await ws.send_str(gateway._envelope(session_id, "response.create"))
                    elif kind == "response.chunk":
                        text = (event.get("chunk") or {}).get("text") or {}
                        if text.get("channel") == self._answer_channel and text.get("text"):
                            on_content(time.monotonic())
                    elif kind == "response.output_text.delta":
                        if event.get("delta"):
                            on_content(time.monotonic())
                    elif kind == "response.done":
                        status = (event.get("response") or {}).get("status")
                        if status == "completed":
                            return True, ""
                        return False, f"response.done status {status!r}"
                    elif kind == "error":
                        return False, f"gateway error: {json.dumps(event)[:200]}"
                why = "socket closed before response.done"
                return False, why if attached else "socket closed before conversation.attached"
        except aiohttp.WSServerHandshakeError as exc:
            return False, f"handshake refused: HTTP {exc.status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return False, repr(exc)


class Target:
    """How to send one chat to the emulator directly or through grokproxy."""

    def __init__(self, kind: str, transport: str, url: str, tokens: list[str], api_key: str | None):
        self.kind = kind
        self.transport = transport
        self.url = url.rstrip("/") + (DIRECT_PATH if kind == "direct" else PROXY_PATH)
        self.tokens = tokens
        self.api_key = api_key
        self.gateway = GatewayClient(url, tokens) if self.over_gateway else None
        self._n = 0
        if kind == "direct":
            self._body = json.dumps(direct_body("benchmark request")).encode()

    @property
    def over_gateway(self) -> bool:
        """Whether requests go straight to the emulator's WebSocket gateway."""
        return self.kind == "direct" and self.transport == "gateway"

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
        # The pool key: grokproxy picks an account of its pool (as a deployment is used).
        return {
            "data": json.dumps(body).encode(),
            "headers": {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.api_key}",
            },
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
    served = 0  # every complete reply, warm-up included: what the servers' CPU was spent on
    began = time.monotonic()
    count_from, stop_at = began + warmup, began + warmup + duration

    async def worker() -> None:
        nonlocal served
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            if target.gateway is not None:
                ok, why = await target.gateway.turn(session, lambda _arrival: None)
                body = why.encode()
            else:
                ok, body = await post_whole(session, target)
            done = time.monotonic()
            served += ok
            if sent < count_from or done > stop_at:
                continue
            if ok:
                latencies.append(done - sent)
            else:
                errors.append(body[:200].decode(errors="replace"))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "requests": len(latencies),
        "served": served,
        "errors": len(errors),
        "error_samples": errors[:3],
        "rps": round(len(latencies) / duration, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
    }


async def post_whole(session, target: Target) -> tuple[bool, bytes]:
    """One non-streamed HTTP request: whether its whole reply came, and the body."""
    try:
        async with session.post(target.url, **target.request(stream=False)) as resp:
            body = await resp.read()
            return resp.status == 200 and (
                b'"modelResponse"' in body
                if target.kind == "direct"
                else b'"chat.completion"' in body
            ), body
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, repr(exc).encode()


async def read_stream(session, target: Target, sent: float, on_content) -> tuple[bool, str]:
    """Read one streamed reply line by line; on_content(arrival) for each content line."""
    if target.gateway is not None:
        return await target.gateway.turn(session, on_content)
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
    served = 0  # every complete reply, warm-up included: what the servers' CPU was spent on
    began = time.monotonic()
    count_from, stop_at = began + warmup, began + warmup + duration

    async def worker() -> None:
        nonlocal served
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            arrivals: list[float] = []
            ok, why = await read_stream(session, target, sent, arrivals.append)
            first = arrivals[:1]
            served += ok
            if sent < count_from or time.monotonic() > stop_at:
                continue
            if ok and first:
                firsts.append(first[0] - sent)
            else:
                errors.append(why or "no content")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "requests": len(firsts),
        "served": served,
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
    # A stream is "open" from its first content chunk to its end: the server is serving it,
    # not holding it in a queue. The peak says whether every stream was held at once.
    open_now = peak_open = 0

    async def one(i: int) -> None:
        nonlocal chunks, open_now, peak_open
        await asyncio.sleep(ramp * i / max(1, streams))
        sent = time.monotonic()
        arrivals: list[float] = []

        def on_content(arrival: float) -> None:
            nonlocal open_now, peak_open
            if not arrivals:
                open_now += 1
                peak_open = max(peak_open, open_now)
            arrivals.append(arrival)

        try:
            ok, why = await read_stream(session, target, sent, on_content)
        finally:
            if arrivals:
                open_now -= 1
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
        "error_samples": sorted(set(errors))[:3],
        "chunks": chunks,
        "peak_open": peak_open,
        "wall_s": round(time.monotonic() - began, 1),
        "ttfb_p50_ms": ms(percentile(firsts, 50)),
        "ttfb_p99_ms": ms(percentile(firsts, 99)),
        "ttfb_max_ms": ms(max(firsts) if firsts else None),
        "gap_p50_ms": ms(percentile(extra, 50)),
        "gap_p99_ms": ms(percentile(extra, 99)),
        "gap_max_ms": ms(max(extra) if extra else None),
    }


async def main_async(args) -> dict[str, Any]:
    tokens = [t for t in Path(args.tokens_file).read_text().split() if t]
    target = Target(args.target, args.transport, args.url, tokens, args.api_key)
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
    p.add_argument(
        "--transport",
        choices=("http", "gateway"),
        default="http",
        help="how the direct target reaches the emulator",
    )
    p.add_argument("--api-key", help="grokproxy pool key (required for the proxy target)")
    p.add_argument("--concurrency", type=int, default=32, help="workers, or streams for held")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    p.add_argument("--interval", type=float, default=0.05, help="emulator pace (held)")
    p.add_argument("--ramp", type=float, default=2.0, help="seconds to open every held stream")
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    if args.target == "proxy" and not args.api_key:
        p.error("--api-key (the pool key) is required for the proxy target")
    # One socket per stream (plus a few): say so at once rather than fail 2,000 streams late.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.concurrency + 64:
        p.error(f"{args.concurrency} streams need more fds than the hard limit of {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    figures = asyncio.run(main_async(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["client_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

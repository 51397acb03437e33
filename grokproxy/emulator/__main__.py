"""CLI: `python -m grokproxy.emulator --port 5005 [--dialect modes] [--tokens 24] ...`."""

from __future__ import annotations

import argparse
import resource

from aiohttp import web

from .app import WS_TEXT_FORMATS, Config, create_app
from .dialects import DIALECTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the emulator."""
    p = argparse.ArgumentParser(prog="python -m grokproxy.emulator", description="A fake grok.com.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5005)
    p.add_argument("--dialect", choices=DIALECTS, default="modes", help="chat payload era")
    p.add_argument("--tokens", type=int, default=24, help="answer tokens per reply")
    p.add_argument("--tokens-per-second", type=float, default=0.0, help="0 = unpaced")
    p.add_argument("--first-byte-delay", type=float, default=0.0, help="seconds before headers")
    p.add_argument("--slow-delay", type=float, default=2.0, help="first-byte delay of emu-slow-")
    p.add_argument(
        "--ws-text-format",
        choices=WS_TEXT_FORMATS,
        default="chunk",
        help="socket answer text as response.chunk events or response.output_text.delta",
    )
    p.add_argument(
        "--ws-idle-timeout", type=float, default=60.0, help="seconds before an idle socket closes"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the emulator until interrupted."""
    args = parse_args(argv)
    # One socket per stream: 1,000+ streams need more than the usual soft limit of 1,024 fds.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = Config(
        tokens=max(1, args.tokens),
        tokens_per_second=args.tokens_per_second,
        first_byte_delay=args.first_byte_delay,
        dialect=args.dialect,
        slow_delay=args.slow_delay,
        ws_text_format=args.ws_text_format,
        ws_idle_timeout=max(0.01, args.ws_idle_timeout),
    )
    web.run_app(
        create_app(config),
        host=args.host,
        port=args.port,
        access_log=None,  # 1,000 streams of access log lines would cost more than the streams
        handler_cancellation=True,  # a client hang-up cancels its stream at once
        backlog=4096,
        print=lambda msg: print(f"grok.com emulator ({args.dialect}) {msg}", flush=True),
    )


if __name__ == "__main__":
    main()

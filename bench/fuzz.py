"""Seeded fuzzing of every grokproxy route: fails on any 5xx that is grokproxy's own.

    .venv/bin/python bench/fuzz.py --requests 10000 --seed 1          # in process, SQLite
    .venv/bin/python bench/fuzz.py --requests 10000 --seed 1 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/fuzz  # an existing, empty db
    .venv/bin/python bench/fuzz.py --url http://127.0.0.1:8000 --admin-password … --pool-key …

In process, it starts the emulator, builds the app on a fresh database, drives it with the Flask
test client and, for the framing cases, with raw sockets against a live werkzeug server in a
thread. With `--url` everything goes over sockets to that server (which must talk to an emulator
or a grok.com you may hammer).

Each case starts from a valid request of a route and mutates it: the body (wrong types, huge
strings, deep nesting, lone surrogates, NUL, numbers out of range, invalid UTF-8, not JSON, wrong
Content-Type), the headers (odd Authorization forms, huge values) or, over sockets, the framing
(chunked, bad chunk sizes, Content-Length too short or too long, truncated bodies, CL and TE both).

Failure ("grokproxy's own 5xx"): any status >= 500, except a 502, 503 or 504 whose body is the
JSON error shape `{"error": {"message", "type", "code"}}` with a documented type: `upstream_error`
(grok.com failed), `no_available_account` (no usable account) or `service_unavailable` (database
down, /healthz included). A 500 always fails, whatever its body; so does a 5xx in any other shape.
A connection the server closes without an answer (malformed framing) is counted, not failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import socket
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grokproxy.emulator.accounts import email_for, sso_cookie  # noqa: E402

DOCUMENTED_5XX_TYPES = frozenset({"upstream_error", "no_available_account", "service_unavailable"})
BODY_LIMIT = 256 * 1024  # the app's MAX_REQUEST_BYTES in process: huge cases stay cheap
GOOD_TOKENS = [f"emu-fuzz-good-{i:04d}" for i in range(3)]
ABSENT_MD5 = "f" * 32


@dataclass
class Case:
    """One HTTP request to send: over the test client, or as `raw` bytes on a socket."""

    kind: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    raw: bytes | None = None  # the whole request, framing included (socket targets only)


@dataclass
class Outcome:
    """What came back: a status (None when the server closed without answering) and the body."""

    status: int | None
    body: bytes = b""


@dataclass
class Report:
    """Counts per status and the failing cases."""

    statuses: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    failures: list[tuple[Case, Outcome]] = field(default_factory=list)

    def summary(self) -> str:
        """One line per status, then the failures (first bytes of each)."""
        lines = [f"{sum(self.statuses.values())} requests, {len(self.failures)} failures"]
        lines += [f"  {status}: {n}" for status, n in sorted(self.statuses.items(), key=str)]
        for case, outcome in self.failures[:20]:
            lines.append(f"FAIL {case.kind} {case.method} {case.path} -> {outcome.status}")
            lines.append(f"     {outcome.body[:300]!r}")
        return "\n".join(lines)


def is_own_5xx(status: int | None, body: bytes) -> bool:
    """True when a response is a 5xx grokproxy does not document (see the module docstring)."""
    if status is None or status < 500:
        return False
    if status not in (502, 503, 504):
        return True
    try:
        error = json.loads(body)["error"]
        return not (
            isinstance(error.get("message"), str)
            and isinstance(error.get("code"), str)
            and error.get("type") in DOCUMENTED_5XX_TYPES
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return True


# ---- hostile values -------------------------------------------------------------------------


DEEP_MARKER = re.compile(rb'"@@deep:(\d+):([ao])@@"')


def nested(depth: int, rng: random.Random) -> str:
    """A placeholder that `encode` turns into arrays or objects nested `depth` deep (too deep for
    json.dumps itself to write)."""
    return f"@@deep:{depth}:{rng.choice('ao')}@@"


def _expand(match: re.Match) -> bytes:
    depth = int(match.group(1))
    if match.group(2) == b"a":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def encode(value: Any) -> bytes:
    """JSON bytes of a fuzzed value (ASCII: lone surrogates travel as \\udXXX escapes)."""
    return DEEP_MARKER.sub(_expand, json.dumps(value).encode())


def hostile_value(rng: random.Random) -> Any:
    """A JSON value chosen to break a validator (json.dumps escapes surrogates as \\udXXX)."""
    choices: list[Callable[[], Any]] = [
        lambda: None,
        lambda: True,
        lambda: 0,
        lambda: -1,
        lambda: 10**30,
        lambda: -(10**30),
        lambda: 1.5,
        lambda: 1e308,
        lambda: "",
        lambda: " ",
        lambda: "\ud800",
        lambda: "a\udfffb",
        lambda: "nul\u0000inside",
        lambda: "\u202e\ufeff\u200b",
        lambda: "😀" * rng.randint(1, 50),
        lambda: "x" * rng.choice([300, 5000, 70000]),
        lambda: "x" * (BODY_LIMIT + 10),
        lambda: [],
        lambda: {},
        lambda: [hostile_value(rng) for _ in range(rng.randint(1, 3))],
        lambda: {"k": "v", "\ud800": 1},
        lambda: nested(rng.choice([5, 99, 101, 1000, 5000]), rng),
        lambda: "http://127.0.0.1:99999/x.png",
        lambda: "http://[::1",
        lambda: "http://" + "a" * 300 + "/x",
        lambda: "data:image/png;base64,!!!",
        lambda: "sso=" + "a" * 20 + ";",
        lambda: "0" * 32,
        lambda: "99999999999999999999",
    ]
    return rng.choice(choices)()


def mutate_json(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """A copy of `value` with one random spot replaced, dropped or added."""
    if depth > 6 or not isinstance(value, dict | list) or not value or rng.random() < 0.2:
        return hostile_value(rng)
    if isinstance(value, dict):
        value = dict(value)
        key = rng.choice(list(value))
        action = rng.random()
        if action < 0.15:
            del value[key]
        elif action < 0.25:
            value[rng.choice(["extra", "\ud800", "", "stream", "page"])] = hostile_value(rng)
        else:
            value[key] = mutate_json(value[key], rng, depth + 1)
        return value
    value = list(value)
    index = rng.randrange(len(value))
    if rng.random() < 0.15:
        value.append(hostile_value(rng))
    else:
        value[index] = mutate_json(value[index], rng, depth + 1)
    return value


# ---- routes ----------------------------------------------------------------------------------


@dataclass
class Credentials:
    """What the fuzzer may present: keys made at setup, plus the fixed ones."""

    admin: str
    pool: str
    user_key: str | None = None
    login_path: str | None = None
    sso: str = field(default_factory=lambda: sso_cookie("emu-fuzz-own-token"))


def chat_body(rng: random.Random) -> dict[str, Any]:
    content: Any = rng.choice(
        [
            "hello",
            [{"type": "text", "text": "hi"}],
            [
                {"type": "text", "text": "what is it"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        ]
    )
    body: dict[str, Any] = {
        "model": rng.choice(["grok-3", "grok-4", "grok-3-fast"]),
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": content},
        ],
        "stream": rng.random() < 0.4,
    }
    if rng.random() < 0.3:
        body["conversation_id"] = "9f1c6f8e-0000-4000-8000-000000000000"
    if rng.random() < 0.2:
        body["stream_options"] = {"include_usage": True}
    return body


def routes(creds: Credentials) -> list[tuple[str, str, str | None, Callable[[random.Random], Any]]]:
    """(method, path, bearer, valid body maker) for every route; body None means no body."""
    chat_keys = [creds.pool, creds.sso] + ([creds.user_key] if creds.user_key else [])
    none = lambda rng: None  # noqa: E731
    table = [
        ("POST", "/v1/chat/completions", "chat", chat_body),
        ("POST", "/chat/completions", "chat", chat_body),
        ("GET", "/v1/models", "chat", none),
        ("GET", "/models", "chat", none),
        ("GET", "/v1/models/grok-3", "chat", none),
        ("POST", "/v1/responses", "chat", lambda rng: {"model": "grok-3", "input": "hi"}),
        ("OPTIONS", "/v1/chat/completions", None, none),
        (
            "POST",
            "/api/batch-add-grok-token",
            creds.admin,
            lambda rng: {"sso_token_list": [rng.choice(GOOD_TOKENS), "emu-invalid-fuzz-x"]},
        ),
        ("GET", "/api/get-grok-list", creds.admin, none),
        ("POST", "/api/get-grok-list", creds.admin, lambda rng: {"page": 1, "page_size": 5}),
        (
            "POST",
            "/api/delete-grok-token",
            creds.admin,
            lambda rng: {"email_md5_list": [ABSENT_MD5]},
        ),
        (
            "POST",
            "/api/login",
            creds.admin,
            lambda rng: {
                "user_name": f"fuzz-{rng.randint(0, 5)}",
                "email_md5": md5_of(GOOD_TOKENS[0]),
            },
        ),
        (
            "POST",
            "/api/login-v2",
            creds.admin,
            lambda rng: {"user_name": "fuzz-v2", "sso_token": rng.choice(GOOD_TOKENS)},
        ),
        ("GET", creds.login_path or "/login/abc", None, none),
        ("GET", "/login", None, none),
        ("GET", "/chat", None, none),
        ("POST", "/logout", None, none),
        ("GET", "/images/not-signed", None, none),
        ("GET", "/healthz", None, none),
        ("GET", "/no/such/route", None, none),
    ]
    resolved = []
    for method, path, bearer, make in table:
        resolved.append((method, path, bearer if bearer != "chat" else "|".join(chat_keys), make))
    return resolved


def md5_of(token: str) -> str:
    import hashlib

    return hashlib.md5(email_for(token).encode(), usedforsecurity=False).hexdigest()


ODD_BEARERS = [
    "",
    "Bearer",
    "Bearer ",
    "bearer  sk-x",
    "Basic dXNlcjpwYXNz",
    "Bearer abcdefghijklmnop!!",
    "Bearer " + "a" * 4000,
    "Bearer sso=abc; sso-rw=def",
    "Bearer eyJhbGciOiJIUzI1NiJ9.e30.e30",
    "Bearer é" * 3,
    "Bearer a.b.c",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
    "",
]


def make_case(rng: random.Random, creds: Credentials, raw_allowed: bool) -> Case:
    """One mutated request of a random route."""
    method, path, bearer, make = rng.choice(routes(creds))
    headers: dict[str, str] = {}
    if bearer:
        headers["Authorization"] = "Bearer " + rng.choice(bearer.split("|"))
    valid = make(rng)
    body = None if valid is None else json.dumps(valid).encode()
    if valid is not None:
        headers["Content-Type"] = "application/json"
    kind = rng.choice(["body", "body", "body", "whole", "headers", "query", "framing"])
    if kind == "framing" and not raw_allowed:
        kind = "body"
    if kind == "body" and valid is not None:
        body = encode(mutate_json(valid, rng))
    elif kind == "whole":
        body = rng.choice(
            [
                b"",
                b"{",
                b"[1, 2]",
                b'"text"',
                b"null",
                b"\xff\xfe\x00garbage",
                b'{"a": NaN}',
                b"[" * 2000 + b"]" * 2000,
                b'{"model": "grok-3", "messages": [{"role": "user", "content": "\\ud800"}]}',
                b"sso_token_list=a&sso_token_list=b",
                b"x" * (BODY_LIMIT + 1),
            ]
        )
        headers["Content-Type"] = rng.choice(CONTENT_TYPES)
    elif kind == "headers":
        choice = rng.random()
        if choice < 0.6:
            odd = rng.choice(ODD_BEARERS)
            headers["Authorization"] = odd
        elif choice < 0.8:
            headers["Content-Type"] = rng.choice(CONTENT_TYPES)
        else:
            headers["X-Huge"] = "h" * rng.choice([1000, 7000])
    elif kind == "query":
        params = {
            rng.choice(["page", "page_size", "x", "\ud800"]): rng.choice(
                ["0", "-1", "99999999999999999999", "1e3", "abc", "\u0000", "2", ""]
            )
        }
        path = path + "?" + urlencode(params, errors="surrogatepass")
    case = Case(kind, method, path, headers, body)
    if kind == "framing":
        case.raw = framed(rng, case)
    return case


def framed(rng: random.Random, case: Case) -> bytes:
    """The request as bytes with odd framing around its body."""
    body = case.body or b'{"model": "grok-3"}'
    head = [f"{case.method} {case.path} HTTP/1.1", "Host: fuzz"]
    head += [f"{k}: {v}" for k, v in case.headers.items()]
    style = rng.choice(
        ["chunked", "bad-chunk", "short-cl", "long-cl", "both", "dup-cl", "truncated"]
    )
    if style in ("chunked", "bad-chunk", "both", "truncated"):
        head.append("Transfer-Encoding: chunked")
        if style == "both":
            head.append(f"Content-Length: {len(body)}")
        size = rng.choice([1, 7, 1000])
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        if style == "bad-chunk":
            chunks = (
                rng.choice([b"zz\r\n", b"-5\r\n", b"ffffffffffffffff\r\n", b"5\r\nab\r\n"]) + chunks
            )
        if style == "truncated":
            return ("\r\n".join(head) + "\r\n\r\n").encode() + chunks[: len(chunks) // 2]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    if style == "short-cl":
        head.append(f"Content-Length: {max(0, len(body) - 3)}")
    elif style == "long-cl":
        head.append(f"Content-Length: {len(body) + 50}")  # the server waits, then times out
    else:
        head += [f"Content-Length: {len(body)}", f"Content-Length: {len(body) + 1}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# ---- targets ---------------------------------------------------------------------------------


def send_raw(url: str, raw: bytes, timeout: float = 5.0) -> Outcome:
    """Send bytes on a fresh connection and read the first answer (None when there is none)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(raw)
                sock.shutdown(socket.SHUT_WR)
            data = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    data += chunk
    except OSError:
        return Outcome(None)
    if not data.startswith(b"HTTP/"):
        return Outcome(None, data)
    status = int(data.split(b" ", 2)[1])
    return Outcome(status, data.partition(b"\r\n\r\n")[2])


def http_request(url: str, case: Case) -> Outcome:
    """An ordinary request over a socket (the test client's case, for `--url`)."""
    body = case.body or b""
    head = [f"{case.method} {case.path} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    head += [f"{k}: {v}" for k, v in case.headers.items()]
    head += [f"Content-Length: {len(body)}", "Connection: close"]
    raw = "\r\n".join(head).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body
    outcome = send_raw(url, raw, timeout=30)
    if outcome.status is not None and b"\r\n0\r\n" in outcome.body[-16:]:
        outcome.body = dechunk(outcome.body)
    return outcome


def dechunk(data: bytes) -> bytes:
    out, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return data
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def client_request(client, case: Case) -> Outcome:
    """Send a case through the Flask test client."""
    path, _, query = case.path.partition("?")
    response = client.open(
        path,
        method=case.method,
        query_string=query or None,
        headers=case.headers,
        data=case.body,
    )
    return Outcome(response.status_code, response.get_data())


def run(
    send: Callable[[Case], Outcome],
    creds: Credentials,
    *,
    requests: int,
    seed: int,
    raw_url: str | None = None,
) -> Report:
    """Send `requests` seeded cases; framing cases go to `raw_url` when given."""
    rng = random.Random(seed)
    report = Report()
    for _ in range(requests):
        case = make_case(rng, creds, raw_allowed=raw_url is not None)
        outcome = send_raw(raw_url, case.raw) if case.raw is not None else send(case)
        report.statuses[outcome.status] += 1
        report.kinds[case.kind] += 1
        if is_own_5xx(outcome.status, outcome.body):
            report.failures.append((case, outcome))
    return report


# ---- setup -----------------------------------------------------------------------------------


def prepare(send: Callable[[Case], Outcome], creds: Credentials) -> None:
    """Fill the pool and make a user, so the fuzzed requests reach the deep code paths."""
    auth = {"Authorization": f"Bearer {creds.admin}", "Content-Type": "application/json"}
    added = send(
        Case(
            "setup",
            "POST",
            "/api/batch-add-grok-token",
            auth,
            json.dumps({"sso_token_list": GOOD_TOKENS}).encode(),
        )
    )
    if added.status != 200:
        raise RuntimeError(f"batch-add answered {added.status}: {added.body[:300]!r}")
    login = send(
        Case(
            "setup",
            "POST",
            "/api/login",
            auth,
            json.dumps({"user_name": "fuzz-user", "email_md5": md5_of(GOOD_TOKENS[0])}).encode(),
        )
    )
    answer = json.loads(login.body)
    creds.user_key, creds.login_path = answer["api_key"], answer["login_url"]


@contextlib.contextmanager
def in_process(database_url: str | None) -> Iterator[tuple[Any, str]]:
    """The emulator, an app on a fresh database, and a live werkzeug server: (app, url)."""
    from werkzeug.serving import make_server

    from grokproxy import create_app
    from grokproxy.dbupgrade import upgrade_database
    from grokproxy.emulator.testing import running_emulator

    with tempfile.TemporaryDirectory() as folder, running_emulator(tokens=8) as emu:
        app = create_app(
            {
                "SECRET_KEY": "fuzz-secret-key",
                "ADMIN_PASSWORD": "fuzz-admin",
                "AUTHORIZATION": ("sk-fuzz-pool",),
                "DATABASE_URL": database_url or f"sqlite:///{folder}/fuzz.sqlite",
                "GROK_BASE_URL": emu.base_url,
                "GROK_ASSETS_URL": emu.assets_url,
                "MAX_REQUEST_BYTES": BODY_LIMIT,
                "UPSTREAM_READ_TIMEOUT": 10.0,
                "LOG_LEVEL": "ERROR",
            }
        )
        upgrade_database(app)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield app, f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
            with app.app_context():
                from grokproxy.extensions import db

                db.session.remove()
                db.engine.dispose()


def fuzz_app(app, url: str | None, *, requests: int, seed: int) -> Report:
    """Fuzz an app in process (test client), framing cases over `url` when given."""
    client = app.test_client()
    creds = Credentials(admin=app.config["ADMIN_PASSWORD"], pool=app.config["AUTHORIZATION"][0])
    send = lambda case: client_request(client, case)  # noqa: E731
    prepare(send, creds)
    return run(send, creds, requests=requests, seed=seed, raw_url=url)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; exit status 1 when any case failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="fuzz a running server instead of an in-process app")
    parser.add_argument("--admin-password")
    parser.add_argument("--pool-key")
    parser.add_argument("--database-url", help="in process: an existing, empty database")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.CRITICAL)  # expected errors would drown the report
    if args.url:
        creds = Credentials(admin=args.admin_password or "", pool=args.pool_key or "")
        send = lambda case: http_request(args.url, case)  # noqa: E731
        prepare(send, creds)
        report = run(send, creds, requests=args.requests, seed=args.seed, raw_url=args.url)
    else:
        with in_process(args.database_url) as (app, url):
            report = fuzz_app(app, url, requests=args.requests, seed=args.seed)
    print(report.summary())
    print("cases by kind:", dict(report.kinds))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())

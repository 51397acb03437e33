"""The container recipe, checked as far as a machine without a Docker engine or base images can.

Verified here: the Dockerfile's shape (slim Python base, non-root USER, HEALTHCHECK on /healthz,
gunicorn as CMD), and its build and start as a script: every COPY into a temporary root, every
RUN but the user creation in a fresh virtualenv, then the CMD with the Dockerfile's ENV, which
must migrate an empty database and pass the HEALTHCHECK command. compose.yaml is parsed and
checked (services, PostgreSQL URL, nginx with the README's streaming recipe), and
`docker compose config` runs where Docker has the compose plugin.

Not verified here: pulling `python:3.11-slim`, `docker build` itself, the `useradd`/`chown` step
(it would change this machine's users), file permissions as uid 10001, and compose up.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_server import free_port

from conftest import postgres_url

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments out."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def env_pairs(arguments: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(arguments))


def test_the_dockerfile_is_slim_non_root_healthchecked_and_runs_gunicorn():
    steps = instructions()
    assert steps[0][0] == "FROM" and re.fullmatch(r"python:3\.11-slim(@sha256:\w+)?", steps[0][1])
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    [health] = [args for word, args in steps if word == "HEALTHCHECK"]
    assert "/healthz" in health
    [cmd] = [args for word, args in steps if word == "CMD"]
    assert json.loads(cmd) == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    # Migrations run in gunicorn.conf.py's on_starting hook: nothing else may run them.
    assert "upgrade" not in " ".join(args for word, args in steps if word == "RUN")
    # The USER comes before the CMD: the server never runs as root.
    words = [word for word, _ in steps]
    assert words.index("USER") < words.index("CMD")


def _translate(root: Path) -> tuple[list[str], dict[str, str], list[str], list[str]]:
    """The Dockerfile as shell commands on `root` (standing for /), its ENV, CMD and
    HEALTHCHECK command; the user-creation RUN is left out (and returned as skipped)."""

    def here(text: str) -> str:
        return text.replace("/app", str(root / "app"))

    commands: list[str] = []
    env: dict[str, str] = {}
    cmd: list[str] = []
    health: list[str] = []
    workdir = root
    for word, args in instructions():
        if word == "WORKDIR":
            workdir = Path(here(args))
            commands.append(f"mkdir -p {shlex.quote(str(workdir))}")
        elif word == "COPY":
            *sources, target = shlex.split(args)
            destination = workdir / target
            for source in sources:
                commands.append(
                    f"cp -r {shlex.quote(str(REPO / source))} {shlex.quote(str(destination))}"
                )
        elif word == "RUN":
            if "useradd" in args:
                continue
            commands.append(f"cd {shlex.quote(str(workdir))} && {here(args)}")
        elif word == "ENV":
            for key, value in env_pairs(args).items():
                env[key] = here(value)
        elif word == "CMD":
            cmd = json.loads(args)
        elif word == "HEALTHCHECK":
            health = json.loads(args.split(" CMD ", 1)[1])
    return commands, env, cmd, health


@pytest.mark.timeout(600)
def test_the_dockerfile_commands_build_and_start_a_healthy_server_in_a_fresh_venv(tmp_path):
    if postgres_url():
        pytest.skip("the build does not depend on the database: run once, on the SQLite pass")
    root = tmp_path / "image"
    root.mkdir()
    commands, env, cmd, health = _translate(root)
    script = "set -euo pipefail\n" + "\n".join(commands) + "\n"
    # The image's `python` is a bare 3.11: so is this one (the tests' own interpreter), and
    # nothing of the tests' virtualenv is on the PATH.
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "python").symlink_to(sys.executable)
    build_env = {**os.environ, **env, "PATH": f"{tools}:/usr/bin:/bin"}
    build_env.pop("VIRTUAL_ENV", None)
    built = subprocess.run(
        ["bash", "-c", script], env=build_env, capture_output=True, text=True, timeout=540
    )
    assert built.returncode == 0, built.stderr[-3000:]
    app_dir = root / "app"
    assert (root / "app/venv/bin/gunicorn").exists()
    # Only what the Dockerfile copies is there: a file the server needs but the image lacks fails.
    assert not (app_dir / "tests").exists() and not (app_dir / ".venv").exists()

    port = free_port()
    run_env = {
        key: value
        for key, value in os.environ.items()
        if key in ("HOME", "LANG", "TMPDIR", "SYSTEMROOT")
    }
    run_env.update(env)
    run_env["PATH"] = f"{root / 'app/venv/bin'}:/usr/bin:/bin"
    run_env.update(
        {
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_WORKERS": "2",
            "GUNICORN_THREADS": "2",
            "SECRET_KEY": "k" * 40,
        }
    )
    (app_dir / "instance").mkdir(exist_ok=True)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(cmd, cwd=app_dir, env=run_env, stdout=out, stderr=out)
    try:
        probe = [part.replace("8000", str(port)) for part in health]
        deadline = time.monotonic() + 60
        while True:
            checked = subprocess.run(probe, cwd=app_dir, env=run_env, capture_output=True)
            if checked.returncode == 0:
                break
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "HEALTHCHECK never passed: " + log.read_text()
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    logged = log.read_text()
    assert "database schema is up to date" in logged
    assert (app_dir / "instance" / "grokproxy.sqlite").exists()


def test_compose_runs_grokproxy_on_postgres_behind_nginx_with_the_readme_recipe():
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"grokproxy", "postgres", "nginx"}
    grokproxy = services["grokproxy"]
    assert grokproxy["build"] == "."
    assert grokproxy["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert grokproxy["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "ports" not in grokproxy  # reachable through nginx only
    assert services["postgres"]["image"].startswith("postgres:")
    nginx = services["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    # deploy/nginx.conf holds the README's streaming recipe, word for word but the upstream.
    from test_nginx import readme_recipe

    recipe = readme_recipe().replace("http://127.0.0.1:8000", "http://grokproxy:8000")
    assert recipe.strip() in (REPO / "deploy" / "nginx.conf").read_text()


def test_the_deployed_nginx_config_is_valid_nginx(tmp_path):
    from test_nginx import NGINX

    if not NGINX.exists():
        if os.environ.get("REQUIRE_NGINX") == "1":
            pytest.fail(f"REQUIRE_NGINX=1 but {NGINX} is missing")
        pytest.skip(f"{NGINX} is missing (apt-get install nginx)")
    # The compose service name resolves only on the compose network.
    server = (REPO / "deploy" / "nginx.conf").read_text().replace("grokproxy:8000", "127.0.0.1:9")
    server = server.replace("listen 80;", "listen 127.0.0.1:1;")
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 16; }\n"
        f"http {{\n    access_log off;\n    client_body_temp_path {tmp_path}/body;\n"
        f"    proxy_temp_path {tmp_path}/proxy;\n{server}\n}}\n"
    )
    checked = subprocess.run(
        [str(NGINX), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_docker_compose_config_accepts_the_file_where_docker_compose_exists(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker here")
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if plugin.returncode != 0:
        pytest.skip("docker has no compose plugin here")
    env = {**os.environ, "POSTGRES_PASSWORD": "p", "SECRET_KEY": "k" * 40}
    checked = subprocess.run(
        [docker, "compose", "-f", str(REPO / "compose.yaml"), "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr

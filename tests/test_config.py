"""Configuration: defaults, aliases, parsing errors, .env files and the generated secret key."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest

from grokproxy import create_app
from grokproxy.config import VARIABLES, ConfigError, instance_secret_key, load_config


def test_defaults_match_the_contract():
    config = load_config({})
    assert config["DATABASE_URL"] is None
    assert config["ADMIN_PASSWORD"] is None
    assert config["AUTHORIZATION"] == ()
    assert config["ALLOW_SSO_BEARER"] is True
    assert config["GROK_BASE_URL"] == "https://grok.com"
    assert config["GROK_ASSETS_URL"] == "https://assets.grok.com"
    assert config["GROK_DIALECT"] == "gateway"
    assert config["API_TEMPORARY"] is True
    assert config["THINKING_FORMAT"] == "reasoning_content"
    assert config["MAX_ATTEMPTS"] == 3
    assert config["COOLDOWN_SECONDS"] == 900
    assert config["SSE_KEEPALIVE_SECONDS"] == 15.0
    assert config["CORS_ORIGINS"] == ("*",)
    assert config["PROXY_URL_POOL"] == ()


def test_host_is_an_alias_of_public_url():
    assert load_config({"HOST": "https://gw.example.com"})["PUBLIC_URL"] == "https://gw.example.com"


def test_api_hatd_is_an_alias_of_api_temporary():
    assert load_config({"API_HATD": "false"})["API_TEMPORARY"] is False


def test_the_contract_name_wins_over_its_alias():
    config = load_config({"PUBLIC_URL": "https://a.example", "HOST": "https://b.example"})
    assert config["PUBLIC_URL"] == "https://a.example"


def test_lists_are_comma_separated_and_trimmed():
    config = load_config({"AUTHORIZATION": " sk-a , sk-b,,", "PROXY_URL_POOL": "socks5h://p:1"})
    assert config["AUTHORIZATION"] == ("sk-a", "sk-b")
    assert config["PROXY_URL_POOL"] == ("socks5h://p:1",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_ATTEMPTS", "0"),
        ("MAX_ATTEMPTS", "many"),
        ("ALLOW_SSO_BEARER", "maybe"),
        ("GROK_DIALECT", "grpc"),
        ("THINKING_FORMAT", "xml"),
        ("SSE_KEEPALIVE_SECONDS", "-1"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})


def test_a_bad_secret_value_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        load_config({"PROXY_URL_POOL": "http://user:hunter2@proxy:1", "MAX_ATTEMPTS": "x"})
    assert "hunter2" not in str(info.value)


def test_dotenv_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("MAX_ATTEMPTS=7\nCOOLDOWN_SECONDS=60\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COOLDOWN_SECONDS", "30")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite", "SECRET_KEY": "k" * 32})
    assert app.config["MAX_ATTEMPTS"] == 7
    assert app.config["COOLDOWN_SECONDS"] == 30


def test_secret_key_is_generated_once_with_private_permissions(tmp_path):
    first = instance_secret_key(tmp_path)
    second = instance_secret_key(tmp_path)
    assert first == second and len(first) >= 32
    mode = stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode)
    assert mode == 0o600


def test_app_uses_the_generated_key_when_none_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("GROKPROXY_INSTANCE_PATH", str(tmp_path / "inst"))
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite"})
    assert app.config["SECRET_KEY"] == (tmp_path / "inst" / "secret_key").read_text().strip()


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("GROKPROXY_INSTANCE_PATH", str(tmp_path / "inst"))
    app = create_app({"SECRET_KEY": "k" * 32})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/inst/grokproxy.sqlite"


def test_readme_documents_every_variable(repo_root):
    readme = (repo_root / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    missing = {var.name for var in VARIABLES} - documented
    assert not missing, f"README configuration table lacks {sorted(missing)}"


# --- a bad setting stops every entry point with one line, not a traceback ---------------------

BAD_SETTINGS = [
    ({"MAX_ATTEMPTS": "x"}, "MAX_ATTEMPTS must be a positive integer, got 'x'"),
    ({"GROK_DIALECT": "grpc"}, "GROK_DIALECT must be one of gateway, modes, model-mode, legacy"),
    ({"DATABASE_URL": "nope://x"}, "DATABASE_URL is not a database URL"),
]


def run_entry_point(repo_root, tmp_path, args: list[str], env_overrides: dict[str, str]):
    env = {**os.environ, "GROKPROXY_INSTANCE_PATH": str(tmp_path / "instance")}
    for name in ("DATABASE_URL", "MAX_ATTEMPTS", "GROK_DIALECT"):
        env.pop(name, None)
    env.update(env_overrides)
    return subprocess.run(
        args, cwd=repo_root, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_line_error(done, message: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if "configuration error" in line]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"grokproxy: configuration error: {message}"), done.stderr


@pytest.mark.parametrize(("env", "message"), BAD_SETTINGS)
def test_a_flask_command_stops_with_one_line_naming_the_variable(repo_root, tmp_path, env, message):
    flask = str(repo_root / ".venv/bin/flask")
    done = run_entry_point(repo_root, tmp_path, [flask, "--app", "wsgi", "tokens", "list"], env)
    assert_one_line_error(done, message)
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("env", "message"), BAD_SETTINGS)
def test_gunicorn_check_config_stops_with_one_line(repo_root, tmp_path, env, message):
    gunicorn = str(repo_root / ".venv/bin/gunicorn")
    args = [gunicorn, "-c", "gunicorn.conf.py", "--check-config", "wsgi:app"]
    done = run_entry_point(repo_root, tmp_path, args, env)
    assert_one_line_error(done, message)
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_real_gunicorn_start_stops_in_on_starting_with_one_line(repo_root, tmp_path):
    gunicorn = str(repo_root / ".venv/bin/gunicorn")
    args = [gunicorn, "-c", "gunicorn.conf.py", "-b", "127.0.0.1:0", "wsgi:app"]
    done = run_entry_point(repo_root, tmp_path, args, {"MAX_ATTEMPTS": "0"})
    assert_one_line_error(done, "MAX_ATTEMPTS must be a positive integer, got '0'")


def test_a_bad_gunicorn_setting_stops_with_one_line(repo_root, tmp_path):
    gunicorn = str(repo_root / ".venv/bin/gunicorn")
    args = [gunicorn, "-c", "gunicorn.conf.py", "--check-config", "wsgi:app"]
    done = run_entry_point(repo_root, tmp_path, args, {"GUNICORN_WORKERS": "0"})
    assert_one_line_error(done, "GUNICORN_WORKERS must be an integer of at least 1, got '0'")


def test_create_app_raises_a_config_error_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("GROKPROXY_INSTANCE_PATH", str(tmp_path / "inst"))
    monkeypatch.setenv("MAX_ATTEMPTS", "x")
    with pytest.raises(ConfigError, match=r"^MAX_ATTEMPTS must be a positive integer, got 'x'$"):
        create_app({"SECRET_KEY": "k" * 32})


def test_a_database_url_error_does_not_echo_its_password(tmp_path):
    with pytest.raises(ConfigError) as info:
        create_app({"SECRET_KEY": "k" * 32, "DATABASE_URL": "nodb://u:hunter2@h/d"})
    assert "DATABASE_URL" in str(info.value) and "hunter2" not in str(info.value)


def test_a_bad_models_file_is_a_config_error(tmp_path):
    models = tmp_path / "models.json"
    models.write_text("{not json")
    settings = {"SECRET_KEY": "k" * 32, "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite"}
    with pytest.raises(ConfigError, match="GROK_MODELS_FILE"):
        create_app({**settings, "GROK_MODELS_FILE": str(models)})


def test_env_example_lists_every_variable_at_its_default(repo_root):
    lines = (repo_root / ".env.example").read_text().splitlines()
    listed = dict(line[1:].split("=", 1) for line in lines if re.match(r"^#[A-Z][A-Z_]+=", line))
    assert set(listed) == {var.name for var in VARIABLES}
    # Each commented default, uncommented, parses to exactly the built-in default.
    for var in VARIABLES:
        if listed[var.name]:
            assert load_config({var.name: listed[var.name]})[var.name] == var.default, var.name
        else:
            assert not var.default, var.name

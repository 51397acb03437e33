"""Configuration: defaults, aliases, parsing errors, .env files and the generated secret key."""

from __future__ import annotations

import os
import re
import stat

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

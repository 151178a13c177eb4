"""Configuration: defaults, TOML, environment, and one-line errors for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from postoffice.config import ConfigError, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "postoffice.toml"
    path.write_text(text)
    return path


def test_defaults_bind_loopback_on_unprivileged_ports() -> None:
    config = load(None, env={})
    for name, addr in config.listen.addresses().items():
        assert addr.host == "127.0.0.1" and addr.port > 1024, name


def test_file_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'hostname = "mail.example.com"\n[listen]\nimaps = "0.0.0.0:993"\n')
    config = load(path, env={"POSTOFFICE_LISTEN_POP3S": "127.0.0.1:9995", "POSTOFFICE_DATA_DIR": "/srv/po",
                             "POSTOFFICE_SECURITY_ALLOW_PLAINTEXT_AUTH": "yes"})
    assert config.hostname == "mail.example.com"
    assert config.listen.addresses()["imaps"].port == 993
    assert config.listen.addresses()["pop3s"].port == 9995
    assert config.data_dir == "/srv/po" and config.security.allow_plaintext_auth is True


@pytest.mark.parametrize("text,message", [
    ('hostnme = "x"', "unknown key 'hostnme'"),
    ('[listen]\nimapz = "1.2.3.4:1"', "unknown key 'listen.imapz'"),
    ('[listen]\nimap = "nonsense"', 'expected "host:port"'),
    ('[listen]\nimap = "127.0.0.1:99999"', 'expected "host:port"'),
    ('[limits]\nmax_recipients = "many"', "must be a number"),
    ('[listen]\nimap = "127.0.0.1:1"\npop3 = "127.0.0.1:1"', "both use"),
    ('[tls]\ncert = "/x.pem"', "must be set together"),
    ("hostname = ", "not valid TOML"),
    ("listen = 5", "must be a table"),
])
def test_mistakes_are_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(write(tmp_path, text), env={})
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert str(tmp_path) in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "nope.toml", env={})


def test_shipped_configs_are_valid() -> None:
    root = Path(__file__).parents[2]
    load(root / "postoffice.toml", env={})
    production = load(root / "docs" / "production.toml", env={})
    assert production.listen.addresses()["smtp"].port == 25
    assert production.listen.addresses()["imaps"].port == 993


def test_unknown_environment_variables_are_ignored_and_listed() -> None:
    config = load(None, env={"POSTOFFICE_TEST_PG_DSN": "postgresql://x", "POSTOFFICE_LISTEN_IMAPZ": "1:1",
                             "POSTOFFICE_HOSTNAME": "mail.example.com"})
    assert config.hostname == "mail.example.com"
    assert config.ignored_env == ("POSTOFFICE_LISTEN_IMAPZ", "POSTOFFICE_TEST_PG_DSN")

"""Settings.from_env: the one place LAB_* variables are read."""

from __future__ import annotations

import pytest
from labstack.settings import Settings, SettingsError

BASE = {
    "LAB_SERVICE": "echo",
    "LAB_SLOT": "2",
    "LAB_VERSION": "v1",
    "LAB_HOST": "127.0.9.2",
    "LAB_PORT": "8080",
    "LAB_ETCD": "http://127.0.0.1:2379",
}


def test_reads_required_and_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.instance_id == "echo-2"
    assert settings.address == "127.0.9.2:8080"
    assert (settings.etcd_host, settings.etcd_port) == ("127.0.0.1", 2379)
    assert (settings.lease_ttl, settings.drain_seconds, settings.text) == (3, 0.3, "hello")
    assert settings.metrics_port is None and settings.gateway is None
    assert settings.admin_port is None and settings.faults_file is None


def test_names_every_missing_or_invalid_variable() -> None:
    env = {**BASE, "LAB_SLOT": "11", "LAB_PORT": "http", "LAB_ETCD": "127.0.0.1:2379"}
    del env["LAB_VERSION"]
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env, needs=("LAB_GATEWAY",))
    message = str(error.value)
    for name in ("LAB_SLOT", "LAB_PORT", "LAB_ETCD", "LAB_VERSION is not set", "LAB_GATEWAY"):
        assert name in message


def test_optional_variables_are_validated() -> None:
    env = {**BASE, "LAB_METRICS_PORT": "9100", "LAB_GATEWAY": "http://127.0.0.1:8000/"}
    settings = Settings.from_env({**env, "LAB_LEASE_TTL": "5", "LAB_DRAIN_SECONDS": "0"})
    assert (settings.metrics_port, settings.gateway) == (9100, "http://127.0.0.1:8000")
    assert (settings.lease_ttl, settings.drain_seconds) == (5, 0.0)
    with pytest.raises(SettingsError, match="LAB_LEASE_TTL"):
        Settings.from_env({**env, "LAB_LEASE_TTL": "0"})


def test_admin_port_and_faults_file() -> None:
    env = {**BASE, "LAB_ADMIN_PORT": "18080", "LAB_FAULTS_FILE": "/tmp/echo-2.json",
           "LAB_ADMIN_TOKEN_FILE": "/tmp/admin-token"}
    settings = Settings.from_env(env, needs=("LAB_ADMIN_PORT",))
    assert (settings.admin_port, settings.faults_file) == (18080, "/tmp/echo-2.json")
    assert settings.admin_token_file == "/tmp/admin-token"
    with pytest.raises(SettingsError, match="LAB_ADMIN_TOKEN_FILE must name the file"):
        Settings.from_env({**env, "LAB_ADMIN_TOKEN_FILE": ""})
    with pytest.raises(SettingsError, match="LAB_ADMIN_PORT is not set"):
        Settings.from_env(BASE, needs=("LAB_ADMIN_PORT",))
    metrics = {"LAB_ADMIN_PORT": "9100", "LAB_METRICS_PORT": "9100"}
    for clash in ({"LAB_ADMIN_PORT": "8080"}, metrics):
        with pytest.raises(SettingsError, match="LAB_ADMIN_PORT must differ from LAB_PORT"):
            Settings.from_env({**BASE, "LAB_ADMIN_TOKEN_FILE": "/tmp/admin-token", **clash})


def test_registration_keys_may_only_name_version_and_pid() -> None:
    keys = {"LAB_SERVER_KEYS": "a/{version}/1 b/1", "LAB_REGISTRY_KEY": "r/echo-2/{pid}"}
    settings = Settings.from_env({**BASE, **keys})
    assert settings.server_keys == ("a/{version}/1", "b/1")
    assert settings.registry_key == "r/echo-2/{pid}"
    for bad in ("a/{slot}/1", "a/{version/1", "a/{}/1"):
        with pytest.raises(SettingsError, match="LAB_SERVER_KEYS may only use {version} and {pid}"):
            Settings.from_env({**BASE, **keys, "LAB_SERVER_KEYS": bad})
    with pytest.raises(SettingsError, match="LAB_SERVER_KEYS is not set"):
        Settings.from_env(BASE, needs=("LAB_SERVER_KEYS",))


def test_log_level_is_one_of_four_names_in_any_case() -> None:
    assert Settings.from_env(BASE).log_level == "info"
    for raw, level in (("debug", "debug"), ("WARNING", "warning"), (" Error ", "error"),
                       ("info", "info")):
        assert Settings.from_env({**BASE, "LAB_LOG_LEVEL": raw}).log_level == level
    for bad in ("loud", "critical", "10", "warn"):
        with pytest.raises(SettingsError) as error:
            Settings.from_env({**BASE, "LAB_LOG_LEVEL": bad})
        assert (f"LAB_LOG_LEVEL must be one of debug, info, warning, error, got {bad!r}"
                in str(error.value))

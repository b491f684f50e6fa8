from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.config import Settings, load_settings, mask_url, public_view, to_environ
from fraudstream.errors import ConfigError


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fraudstream.toml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_given(tmp_path: Path) -> None:
    settings = load_settings(config_file=None, environ={}, overrides={})
    assert settings == Settings()


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = _toml(tmp_path, "partitions = 8\nbatch_size = 100\nblock_ms = 50\n")
    env = {"FRAUDSTREAM_BATCH_SIZE": "200", "FRAUDSTREAM_BLOCK_MS": "60"}
    settings = load_settings(config_file=path, environ=env, overrides={"block_ms": 70})
    assert settings.partitions == 8  # file over default
    assert settings.batch_size == 200  # env over file
    assert settings.block_ms == 70  # flag over env
    assert settings.lease_ttl_ms == Settings().lease_ttl_ms  # default untouched


def test_unset_flags_do_not_override(tmp_path: Path) -> None:
    settings = load_settings(
        config_file=_toml(tmp_path, "batch_size = 9\n"), environ={}, overrides={"batch_size": None}
    )
    assert settings.batch_size == 9


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    path = _toml(tmp_path, "partitions = 3\n")
    settings = load_settings(environ={"FRAUDSTREAM_CONFIG": str(path)})
    assert settings.partitions == 3


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(config_file=tmp_path / "nope.toml", environ={})


def test_unknown_env_setting_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=None, environ={"FRAUDSTREAM_PARTITONS": "4"})
    assert info.value.key == "partitons"
    assert "did you mean 'partitions'" in str(info.value)


def test_unknown_file_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batchsize.*did you mean 'batch_size'"):
        load_settings(config_file=_toml(tmp_path, "batchsize = 3\n"), environ={})


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=None, environ={"FRAUDSTREAM_PARTITIONS": "many"})
    assert info.value.key == "partitions"


def test_invalid_value_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=None, environ={"FRAUDSTREAM_PARTITIONS": "0"})
    assert info.value.key == "partitions"
    assert "must be >= 1, got 0" in str(info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(config_file=_toml(tmp_path, "partitions = = 3"), environ={})


def test_secrets_are_masked() -> None:
    settings = Settings(api_key="s3cret", valkey_url="redis://user:hunter2@db:6379/0")
    view = public_view(settings)
    assert view["api_key"] == "****"
    assert view["valkey_url"] == "redis://user:****@db:6379/0"
    assert "hunter2" not in str(view) and "s3cret" not in str(view)
    assert mask_url("redis://localhost:6379") == "redis://localhost:6379"


def test_environ_round_trip() -> None:
    settings = Settings(partitions=5, review_amount=100.5, valkey_url="redis://h:1")
    assert load_settings(config_file=None, environ=to_environ(settings)) == settings

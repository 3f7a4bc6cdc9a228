from pathlib import Path

import pytest

from swarm.errors import ConfigurationError
from swarm.settings import Settings, get_settings


def test_defaults_work_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SWARM_REDIS_URL", "SWARM_VLLM_URLS", "SWARM_HOME", "SWARM_ADAPTERS_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.vllm_urls == ["http://127.0.0.1:8000"]
    assert settings.adapters_dir == Path("adapters")
    assert settings.home == Path("~/.cache/swarm").expanduser()
    assert settings.api_keys == []


def test_environment_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_VLLM_URLS", "http://a:8000/, http://b:8000")
    monkeypatch.setenv("SWARM_API_KEYS", "k1,k2")
    monkeypatch.setenv("SWARM_HEARTBEAT_TIMEOUT_S", "2.5")
    monkeypatch.setenv("SWARM_HOME", "~/swarm-home")
    settings = Settings()
    assert settings.vllm_urls == ["http://a:8000", "http://b:8000"]
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert settings.heartbeat_timeout_s == 2.5
    assert settings.models_dir == Path("~/swarm-home/models").expanduser()


def test_a_bad_variable_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_MAX_DELIVERIES", "many")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError) as info:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("invalid settings: SWARM_MAX_DELIVERIES='many'")

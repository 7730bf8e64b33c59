"""Settings: lists from variables, every problem at once and named by its source, warnings for unknown names,
cross-field checks, and an example file that cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, ModelProvider, Settings, example_config, load_config
from core.report import Outcome

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AMOS_* or model variables from the developer's shell, and no ./config.yaml."""
    import os

    for name in list(os.environ):
        if name.startswith(("AMOS_", "GOOGLE_")) or name == "KUBECONFIG":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def problems(**kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_config(**kwargs)  # type: ignore[arg-type]
    return error.value.problems


def test_lists_are_comma_separated_in_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMOS_NAMESPACES", "shop, web")
    monkeypatch.setenv("AMOS_ALLOWED_VERBS", "patch,rollback")
    monkeypatch.setenv("AMOS_SLACK_OUTCOMES", '["escalated"]')  # JSON still works
    settings = load_config().settings
    assert settings.namespaces == ["shop", "web"]
    assert [v.value for v in settings.allowed_verbs] == ["patch", "rollback"]
    assert settings.slack_outcomes == [Outcome.ESCALATED]


def test_every_error_is_reported_at_once_naming_the_variable_or_the_file_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AMOS_MAX_ATTEMPTS", "lots")
    monkeypatch.setenv("AMOS_ALLOWED_VERBS", "patch,explode")
    path = write(tmp_path, "smtp_port: 0\nhttp_bind_address: 'not an address'\nmax_attempts: 1\n")
    found = problems(path=path)
    assert len(found) == 4, found
    assert any(p.startswith("AMOS_MAX_ATTEMPTS: ") and "'lots'" in p for p in found)
    assert any(p.startswith("AMOS_ALLOWED_VERBS[1]: ") and "explode" in p for p in found)
    assert any(p.startswith(f"'smtp_port' in {path}: ") for p in found)
    assert any(p.startswith(f"'http_bind_address' in {path}: ") for p in found)


def test_the_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AMOS_MAX_ATTEMPTS", "3")
    path = write(tmp_path, "max_attempts: 1\ncluster_name: prod-eu\n")
    settings = load_config(path).settings
    assert settings.max_attempts == 3 and settings.cluster_name == "prod-eu"


def test_a_secret_value_is_never_echoed_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMOS_SLACK_WEBHOOK_URL", "")
    monkeypatch.setenv("AMOS_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("AMOS_SMTP_PORT", "x")
    found = problems()
    assert not any("hunter2" in p for p in found)


def test_unknown_variables_and_file_keys_are_warned_about_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AMOS_MAX_ATTEMPS", "3")
    monkeypatch.setenv("AMOS_CONFIG", str(write(tmp_path, "smtp_hots: mail\nmodle: x\n")))
    monkeypatch.setenv("AMOS_LAB_CACHE", "/tmp")  # read by the lab, not a setting: no warning
    loaded = load_config()
    assert "unknown environment variable AMOS_MAX_ATTEMPS ignored (did you mean AMOS_MAX_ATTEMPTS?)" in loaded.warnings
    assert any("unknown key 'smtp_hots'" in w and "did you mean smtp_host?" in w for w in loaded.warnings)
    assert any("unknown key 'modle'" in w and "did you mean model?" in w for w in loaded.warnings)
    assert not any("AMOS_LAB_CACHE" in w for w in loaded.warnings)
    assert len(loaded.warnings) == 3


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AMOS_SMTP_HOST": "mail"}, "AMOS_SMTP_HOST is set but AMOS_ENGINEER_EMAIL is not"),
        (
            {"AMOS_SMTP_HOST": "mail", "AMOS_ENGINEER_EMAIL": "a@b", "AMOS_SMTP_USERNAME": "u"},
            "AMOS_SMTP_USERNAME is set but AMOS_SMTP_PASSWORD is not",
        ),
        ({"AMOS_MODEL_PROVIDER": "gemini"}, "AMOS_MODEL_PROVIDER is gemini but neither GOOGLE_API_KEY"),
        ({"AMOS_MODEL_PROVIDER": "openai"}, "AMOS_MODEL_PROVIDER is openai but neither AMOS_OPENAI_BASE_URL"),
        ({"GOOGLE_GENAI_USE_VERTEXAI": "true"}, "GOOGLE_GENAI_USE_VERTEXAI needs GOOGLE_CLOUD_PROJECT"),
    ],
)
def test_settings_that_cannot_work_together_are_errors(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = problems()
    assert any(expected in p for p in found), found


def test_settings_that_probably_do_not_do_what_was_meant_are_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMOS_ENGINEER_EMAIL", "oncall@example.com")
    monkeypatch.setenv("AMOS_WEBHOOK_SECRET", "k")
    monkeypatch.setenv("AMOS_SLACK_OUTCOMES", "escalated")
    warnings = load_config().warnings
    assert any("no e-mail will be sent" in w for w in warnings)
    assert any("AMOS_WEBHOOK_SECRET is set but AMOS_WEBHOOK_URL is not" in w for w in warnings)
    assert any("slack channel is not configured" in w for w in warnings)


def test_a_gemini_provider_with_a_key_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMOS_MODEL_PROVIDER", "gemini")
    monkeypatch.setenv("GOOGLE_API_KEY", "k")
    assert load_config().settings.resolved_provider() is ModelProvider.GEMINI


def test_the_bind_address_accepts_addresses_and_host_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for good in ("127.0.0.1", "::", "localhost", "amos.amos-system.svc"):
        monkeypatch.setenv("AMOS_HTTP_BIND_ADDRESS", good)
        assert load_config().settings.http_bind_address == good
    monkeypatch.setenv("AMOS_HTTP_BIND_ADDRESS", "0.0.0.0:8080")
    assert any(p.startswith("AMOS_HTTP_BIND_ADDRESS: ") for p in problems())


def test_yaml_errors_are_one_line_with_the_position(tmp_path: Path) -> None:
    found = problems(path=write(tmp_path, "namespaces: [shop\n"))
    assert len(found) == 1 and "\n" not in found[0] and "line 2" in found[0]


def test_the_example_config_lists_every_setting_and_matches_the_code() -> None:
    example = REPO / "config.example.yaml"
    assert example.read_text() == example_config(), (
        "config.example.yaml drifted from core/config.py: regenerate it with "
        "`python -c 'from core.config import example_config; print(example_config(), end=\"\")' > config.example.yaml`"
    )
    for name, info in Settings.model_fields.items():
        assert f"\n{name}: " in example.read_text(), name
        assert info.description, f"{name} needs a description for the example file"


def test_the_example_config_loads_without_errors_or_warnings() -> None:
    loaded = load_config(REPO / "config.example.yaml")
    assert loaded.warnings == []
    assert loaded.settings == Settings()

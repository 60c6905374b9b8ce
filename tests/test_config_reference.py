"""docs/configuration.md is generated from the settings models and must stay in step with them."""

from __future__ import annotations

from pathlib import Path

from launcher.reference import render

DOC = Path(__file__).parents[1] / "docs" / "configuration.md"


def test_the_configuration_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m launcher.reference > docs/configuration.md"


def test_every_daemon_setting_is_documented_with_its_environment_variable() -> None:
    text = render()
    for variable in (
        "EDGEOFF_SITE_BROKER__PASSWORD_FILE",
        "EDGEOFF_SITE_FAILURE_MODE",
        "EDGEOFF_WORKER_DETECTOR",
        "EDGEOFF_WORKER_REDIS__URL",
        "EDGEOFF_AGENT_ENGINE",
        "EDGEOFF_AGENT_BROKER__TLS__CA_FILE",
    ):
        assert f"`{variable}`" in text

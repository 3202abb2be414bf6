"""The documentation stays in step with the code."""

from __future__ import annotations

from pathlib import Path

from hexahub.settings import settings_reference

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_matches_settings() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    start = text.index("<!-- settings:begin -->\n") + len("<!-- settings:begin -->\n")
    end = text.index("<!-- settings:end -->")
    assert text[start:end] == settings_reference(), (
        "docs/configuration.md is out of date: run "
        "`hexahub config docs` and paste its output between the settings markers"
    )


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme[:1500]
    assert "scripts/start" in head and "scripts/test" in head
    for script in ("scripts/start", "scripts/test", ".ci/run"):
        path = ROOT / script
        assert path.exists(), script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"

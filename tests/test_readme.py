"""The README stays true: every setting is documented, and the two commands are there."""

from __future__ import annotations

from pathlib import Path

from server.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme() -> None:
    missing = [f"SWITCHBOARD_{name.upper()}" for name in Settings.model_fields
               if f"`SWITCHBOARD_{name.upper()}`" not in README]
    assert not missing, f"document these settings in README.md: {missing}"


def test_the_two_commands_are_documented() -> None:
    assert "make serve" in README and "make test" in README

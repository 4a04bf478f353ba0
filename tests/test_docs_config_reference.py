"""docs/configuration.md is what scripts/config_reference.py writes from the config schema."""

from __future__ import annotations

import importlib.util

import yaml

from conftest import REPO


def generator():
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_page_is_the_generated_one():
    reference = generator()
    expected = reference.render(yaml.safe_load(reference.SCHEMA.read_text()))
    assert reference.PAGE.read_text() == expected, (
        "docs/configuration.md differs from the config schema's reference: run `python scripts/config_reference.py`")


def test_every_schema_key_and_default_is_on_the_page():
    """The generator walks the whole schema: each top-level key, with its default and bounds."""
    reference = generator()
    schema = yaml.safe_load(reference.SCHEMA.read_text())
    page = reference.render(schema)
    for key in schema["properties"]:
        row = next((line for line in page.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, key
        if key in schema["required"]:
            assert "| required |" in row, row
    assert "| `seed` | integer (>= 0) | `2023` |" in page
    assert "| `training.lr` | number (> 0) | `0.01` | `rbda train --lr`: SGD learning rate |" in page


def test_a_schema_change_changes_the_page():
    reference = generator()
    schema = yaml.safe_load(reference.SCHEMA.read_text())
    before = reference.render(schema)
    schema["properties"]["seed"]["default"] = 7
    schema["properties"]["splits"]["description"] = "A new meaning."
    after = reference.render(schema)
    assert "| `seed` | integer (>= 0) | `7` |" in after
    assert "A new meaning." in after and before != after


def test_check_mode_reports_a_stale_page(tmp_path, monkeypatch, capsys):
    reference = generator()
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n")
    monkeypatch.setattr(reference, "PAGE", stale)
    assert reference.main(["--check"]) == 1
    assert "python scripts/config_reference.py" in capsys.readouterr().err
    assert reference.main([]) == 0 and reference.main(["--check"]) == 0

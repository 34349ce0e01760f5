"""`geopixeld curate export | import | status` on the command line."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.pipeline.curation.curation_helpers import decision_file, export_manifest, records

runner = CliRunner()


@pytest.mark.parametrize("command", ["export", "import", "status", "repair"])
def test_every_option_has_help(command):
    res = runner.invoke(app, ["curate", command, "--help"])
    assert res.exit_code == 0, res.output
    options = re.findall(r"^\s+(--[a-z-]+)(?:[ /,]+-[-a-z]+)*\s*(?:<[\w\[\]]+>)?\s*(.*)$", res.output, re.M)
    assert options
    for name, text in options:
        assert text.strip(), f"curate {command} {name} has no help"


def test_export_import_status(drafted, tmp_path):
    res = runner.invoke(app, ["curate", "export", str(drafted), "--split", "val", "--per-sheet", "10"])
    assert res.exit_code == 0, res.output
    assert "Exported 14 patches" in res.output and "sheet-00001.html" in res.output
    folder = next((drafted / "val/curation/exports").iterdir())
    pid = export_manifest(folder)["sheets"][0]["patches"][0]
    f = decision_file(folder, tmp_path / "d.json", "ann", {pid: {"decision": "reject"}})
    res = runner.invoke(app, ["curate", "import", str(drafted), str(f), "--policy", "third-look"])
    assert res.exit_code == 0, res.output
    assert "imported" in res.output and "1 of 14 decided" in res.output and "policy third-look" in res.output
    assert records(drafted, folder="curated")[pid]["curation_status"] == "rejected"
    res = runner.invoke(app, ["curate", "status", str(drafted), "--split", "val"])
    assert res.exit_code == 0 and "1 of 14 decided" in res.output and "complete  no" in res.output
    res = runner.invoke(app, ["curate", "export", str(drafted), "--split", "val", "--per-sheet", "10"])
    assert "Exported 13 patches" in res.output  # the decided patch is left out


def test_errors_name_the_file_and_exit_2(drafted, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    res = runner.invoke(app, ["curate", "import", str(drafted), str(bad)])
    assert res.exit_code == 2 and str(bad) in res.output and "nothing was imported" in res.output
    res = runner.invoke(app, ["curate", "export", str(drafted), "--split", "test"])
    assert res.exit_code == 2 and "no finished records" in res.output
    res = runner.invoke(app, ["curate", "export", str(drafted), "--per-sheet", "0"])
    assert res.exit_code == 2 and "per_sheet" in res.output
    res = runner.invoke(app, ["curate", "import", str(drafted), str(bad), "--policy", "vote"])
    assert res.exit_code == 2 and "--policy" in res.output

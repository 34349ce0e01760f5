"""The `geopixeld` command line: help for every option, config files, clear errors, docs in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.contracts.config import config_reference

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["plan", "demo-data", "demo"])
def test_every_option_has_help(command):
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0
    # every option line carries text after its name and metavar
    options = re.findall(r"^\s+(--[a-z-]+)(?:[ /,]+-[-a-z]+)*\s*(?:<\w+>)?\s*(.*)$", res.output, re.M)
    assert len(options) >= 3
    for name, text in options:
        assert text.strip(), f"{command} {name} has no help"


def test_root_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and all(c in res.output for c in ("plan", "demo-data", "demo"))


def test_plan_command_end_to_end(tiny_root, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["plan", str(tiny_root), str(out), "--split", "val", "-q", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "Plans in" in res.output and "Quarantine" in res.output
    assert list((out / "val/plans").glob("plans-*.parquet"))
    assert "| instance phrases per patch |" in res.output and "| 2.19 |" in res.output  # beside GeoPixelD's


def test_plan_names_splits_as_released_and_reads_test_from_isaids_val(tiny_root, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["plan", str(tiny_root), str(out), "-q", "--workers", "1"])  # default: test
    assert res.exit_code == 0, res.output
    assert list((out / "test/plans").glob("plans-*.parquet")) and not (out / "val").exists()
    import pyarrow.dataset as ds

    assert set(ds.dataset(out / "test/plans", format="parquet").to_table()["split"].to_pylist()) == {"test"}


def test_config_file_and_overrides(tiny_root, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tiers:\n  max_marks: 1\noutput:\n  write_som: false\n")
    out = tmp_path / "out"
    res = runner.invoke(app, ["plan", str(tiny_root), str(out), "--config", str(cfg), "--som", "-q", "--workers", "1"])
    assert res.exit_code == 0, res.output
    import pyarrow.dataset as ds

    rows = ds.dataset(out / "test/plans", format="parquet").to_table().to_pylist()  # the default split
    assert max(len(r["marks"]) for r in rows) == 1
    assert any(r["som_path"] for r in rows)  # --som on the command line beat the file


@pytest.mark.parametrize(
    "args, field",
    [(["--patch-size", "10"], "patch_size"), (["--overlap", "900"], "overlap"), (["--format", "tiff"], "format")],
)
def test_invalid_settings_are_refused_before_work(tiny_root, tmp_path, args, field):
    res = runner.invoke(app, ["plan", str(tiny_root), str(tmp_path / "out"), *args])
    assert res.exit_code == 2 and field in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("split", ["../x", "../../x", "a/b", ".."])
def test_a_split_that_is_not_a_plain_name_is_refused_before_anything_is_written(tiny_root, tmp_path, split):
    out = tmp_path / "nested" / "out"
    res = runner.invoke(app, ["plan", str(tiny_root), str(out), "--split", split, "-q"])
    assert res.exit_code == 2 and "source.split" in res.output and repr(split) in res.output, res.output
    assert res.output.startswith("error:") and not (tmp_path / "nested").exists() and not (tmp_path / "x").exists()
    assert len(res.output.strip().splitlines()) == 1  # one line, naming the field


def test_unknown_config_key_is_named(tiny_root, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tiers:\n  max_markz: 3\n")
    res = runner.invoke(app, ["plan", str(tiny_root), str(tmp_path / "out"), "--config", str(cfg)])
    assert res.exit_code == 2 and "max_markz" in res.output


def test_docs_config_table_matches_code():
    assert config_reference() in (REPO / "docs/config.md").read_text()


def test_docs_plan_schema_names_every_column():
    from pipeline.contracts.plan_schema import GROUP, MARK, OBJECT, PLAN_SCHEMA

    doc = (REPO / "docs/plan-schema.md").read_text()
    names = [f.name for f in PLAN_SCHEMA] + [f.name for t in (OBJECT, GROUP, MARK) for f in t]
    missing = [n for n in names if f"`{n}`" not in doc]
    assert not missing


def test_docs_gcg_schema_names_every_column():
    from pipeline.contracts.gcg_schema import GCG_SCHEMA

    doc = (REPO / "docs/gcg-schema.md").read_text()
    assert not [f.name for f in GCG_SCHEMA if f"`{f.name}`" not in doc]

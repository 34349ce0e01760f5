"""build-geopixeld run in-process against a real Prefect server: the same dataset as the stages called directly,
on threads+processes and on a Dask cluster; progress and table artifacts; failures that name what failed."""

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from flows.without_prefect import build_without_prefect
from flows.params import BuildParams
from pipeline.contracts.shards import read_manifest

pytestmark = [pytest.mark.server, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def params(root: Path, out: Path, **kw) -> BuildParams:
    data = {"source": {"root": str(root), "synthetic": None}, "output": {"out": str(out), "shard_images": 1},
            "dataset": {"require_curation": []}, "workers": 2, "batch_shards": 2, "progress": False}
    data.update(kw)
    return BuildParams.model_validate(data)


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file a user reads from a dataset folder (the manifest itself aside)."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "_manifest.json"]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def baseline(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("direct") / "out"
    summary = build_without_prefect(params(tiny_root, out))
    return fingerprint(summary.folder)


def artifacts(api: str, key: str) -> list[dict]:
    body = json.dumps({"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 5}).encode()
    req = urllib.request.Request(f"{api}/artifacts/filter", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_flow_builds_exactly_what_the_stages_build_and_shows_its_progress(prefect_server, tiny_root, tmp_path, baseline):
    from flows.build import build_geopixeld

    result = build_geopixeld(params(tiny_root, tmp_path / "out"))
    assert fingerprint(Path(result["dataset"])) == baseline
    assert result["rows"]["test"] > 0 and 0 < result["task_runs"] < 30
    stages = {(r["split"], r["stage"]): r for r in result["stages"]}
    # the default splits, as GeoPixelD's: test is read from iSAID's val/
    assert stages[("test", "plan")]["kept"] == stages[("test", "draft")]["records"] == stages[("test", "validate")]["records"]
    assert stages[("test", "verify")]["verified"] == stages[("test", "draft")]["records"]
    table = artifacts(prefect_server.api, "build-geopixeld-stages")[0]
    data = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert {(r["split"], r["stage"]) for r in data} == set(stages)
    progress = artifacts(prefect_server.api, "draft-test")[0]
    assert progress["type"] == "progress" and float(progress["data"]) == 100.0
    card = artifacts(prefect_server.api, "build-geopixeld-card")[0]
    assert "grounded phrases" in card["data"] and "| group phrases per patch |" in card["data"]
    tiers = artifacts(prefect_server.api, "plan-test-tiers")[0]  # the tier mix, before drafting is paid for
    kept, planned = stages[("test", "plan")]["kept"], read_manifest(tmp_path / "out/test/plans")["shards"].values()
    groups = sum(e["stats"]["groups"] for e in planned)
    assert f"| group phrases per patch | {groups / kept:.2f} | 1.01 |" in tiers["data"]


def test_dask_runner_builds_the_same_dataset(prefect_server, tiny_root, tmp_path, baseline):
    pytest.importorskip("prefect_dask", reason="prefect-dask is not installed (pip install -e '.[flows]')")
    from flows.build import build_geopixeld

    result = build_geopixeld(params(tiny_root, tmp_path / "out", task_runner={"kind": "dask", "dask_workers": 2}))
    assert fingerprint(Path(result["dataset"])) == baseline


def test_unreachable_lmm_fails_the_draft_stage_and_keeps_the_plans(prefect_server, tiny_root, tmp_path):
    from flows.build import build_geopixeld
    from pipeline.drafting.lmm_client import LMMUnavailable
    from tests.flows.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    p = params(tiny_root, tmp_path / "out", splits=["val"],
               lmm={"endpoints": {"urls": [url], "model": "ixc"}, "timeout": 5})
    with pytest.raises(LMMUnavailable, match=url.removeprefix("http://")):
        build_geopixeld(p)
    plans = read_manifest(tmp_path / "out/val/plans")
    assert plans["complete"] and plans["rows"] > 0
    records = read_manifest(tmp_path / "out/val/records")
    assert not records or not records.get("complete")
    assert not (tmp_path / "out/dataset/data").exists()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)


def test_invalid_parameters_are_refused_before_anything_starts(tmp_path):
    res = _cli("build", "--set", f"output.out={tmp_path / 'out'}", "--set", "splits=[]", "--set", "tiling.overlap=-5")
    assert res.returncode == 2
    assert "splits:" in res.stderr and "tiling.overlap:" in res.stderr and "nothing was started" in res.stderr
    assert not (tmp_path / "out").exists()


def test_a_read_only_or_full_output_folder_stops_the_build_with_its_path(prefect_server, tiny_root, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount tmpfs folders")
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir(), full.mkdir()
    mounted = []
    try:
        for path, opts in ((ro, "ro,size=64k"), (full, "size=256k")):
            if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)]).returncode:
                pytest.skip("mount (tmpfs) is not permitted here")
            mounted.append(path)
        env = {**os.environ, **prefect_server.env()}
        res = _cli("build", "--set", f"source.root={tiny_root}", "--set", "source.synthetic=null",
                   "--set", f"output.out={ro / 'out'}", "-q", env=env)
        assert res.returncode == 2 and f"{ro / 'out'}" in res.stderr and "read-only" in res.stderr.lower(), res.stderr
        (full / "filler").write_bytes(b"\0" * (200 << 10))  # leaves room for the probe, not for a build
        res = _cli("build", "--set", f"source.root={tiny_root}", "--set", "source.synthetic=null",
                   "--set", f"output.out={full / 'out'}", "--set", "splits=[\"val\"]", "-q", env=env)
        assert res.returncode == 2 and f"{full / 'out'}" in res.stderr and "No space left" in res.stderr, res.stderr
    finally:
        for path in mounted:
            subprocess.run(["umount", str(path)])

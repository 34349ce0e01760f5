"""The validate stage: every grounded record re-checked from the files, a broken one named by shard and patch."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts.shards import read_manifest, write_manifest, write_table
from pipeline.synthetic.tiny_build import tiny_build
from pipeline.verification.records import validate_records


@pytest.fixture
def drafted(tiny_root, tmp_path):
    return tiny_build(tmp_path, splits=("val",), source=tiny_root)


def _change_first_record(out, change):
    d = out / "val/records"
    m = read_manifest(d)
    name = sorted(m["shards"])[0]
    t = pq.read_table(d / name)
    rows = t.to_pylist()
    change(rows[0])
    m["shards"][name]["sha256"] = write_table(pa.Table.from_pylist(rows, schema=t.schema), d / name)
    write_manifest(d, m)
    return rows[0]["patch_id"]


def test_validate_counts_what_it_checked(drafted):
    c = validate_records(drafted, "val")
    assert c["records"] == c["ok"] > 0 and c["phrases"] > c["ok"]


@pytest.mark.parametrize("change, message", [
    (lambda r: r["phrases"][0].update(start=r["phrases"][0]["start"] + 1), "does not hold tag"),
    (lambda r: r.update(phrases=r["phrases"][1:]), "grounded phrases"),
    (lambda r: r["phrases"][0]["rle"].update(size=[10, 10]), "not the patch size"),
    (lambda r: r.update(description=r["description"] + " <p> stray"), "markup left"),
])
def test_validate_names_the_shard_and_patch_of_a_broken_record(drafted, change, message):
    pid = _change_first_record(drafted, change)
    with pytest.raises(ValueError, match=message) as err:
        validate_records(drafted, "val")
    assert pid in str(err.value) and "records-00000.parquet" in str(err.value)

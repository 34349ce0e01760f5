"""METEOR and CIDEr: hand-known values, an independent CIDEr-D from its definition, and the METEOR jar itself."""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from model.eval.caption_metrics import caption_scores
from model.eval.types import caption_text

REFS = {
    "a": "The tennis court at the top left has a green surface and white lines.",
    "b": "Two white storage tanks stand together near the shore of the harbour.",
    "c": "A ship is moored along the western quay beside a long pier.",
}


def test_caption_text_strips_markup_and_tag_numbers():
    d = "The <p> tennis court-1 </p> [SEG] , and <p> ship-2 </p> [SEG] are here. Stray </p> [SEG] tokens go."
    assert caption_text(d) == "The tennis court, and ship are here. Stray tokens go."
    assert caption_text(None) == "" and caption_text("") == ""


def test_perfect_and_empty_captions(java):
    perfect = caption_scores(REFS, dict(REFS))
    assert perfect.meteor == pytest.approx(1.0) and perfect.cider == pytest.approx(10.0)
    assert all(v == pytest.approx(1.0) for v in perfect.meteor_per_image.values())
    empty = caption_scores(REFS, {k: "" for k in REFS})
    assert empty.meteor == 0.0 and empty.cider == 0.0


def test_swapped_captions_score_low_but_not_zero(java):
    swapped = caption_scores(REFS, {"a": REFS["b"], "b": REFS["a"], "c": REFS["c"]})
    assert swapped.cider_per_image["c"] == pytest.approx(10.0)
    assert swapped.cider_per_image["a"] < 1.0 and swapped.meteor_per_image["a"] < 0.5
    assert 0 < swapped.meteor < 1


def _cider_d(refs: dict[str, str], hyps: dict[str, str], n: int = 4, sigma: float = 6.0) -> dict[str, float]:
    """CIDEr-D written from its definition (Vedantam et al. 2015, as pycocoevalcap implements it): tf-idf n-gram
    vectors with document frequencies over the references, hypothesis counts clipped by the reference's, a
    Gaussian length penalty, the mean over n = 1..4, times 10."""
    def grams(s: str, k: int) -> Counter:
        w = s.split()
        return Counter(tuple(w[i : i + k]) for i in range(len(w) - k + 1))

    ids = sorted(refs)
    df = Counter(g for i in ids for k in range(1, n + 1) for g in grams(refs[i], k))
    log_n = math.log(len(ids))

    def vec(s: str, k: int) -> dict:
        c = grams(s, k)
        return {g: tf * (log_n - math.log(max(1.0, df[g]))) for g, tf in c.items()}

    out = {}
    for i in ids:
        total = 0.0
        for k in range(1, n + 1):
            h, r = vec(hyps[i], k), vec(refs[i], k)
            nh, nr = math.sqrt(sum(v * v for v in h.values())), math.sqrt(sum(v * v for v in r.values()))
            dot = sum(min(h[g], r[g]) * r[g] for g in h if g in r)
            delta = len(hyps[i].split()) - len(refs[i].split())
            if nh and nr:
                total += dot / (nh * nr) * math.exp(-(delta**2) / (2 * sigma**2))
        out[i] = 10 * total / n
    return out


def test_cider_agrees_with_its_definition(java):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    hyps = {"a": "A tennis court with white lines at the top left.",
            "b": "Storage tanks near the shore, two of them, white.",
            "c": "A long pier with a ship."}
    got = caption_scores(REFS, hyps)
    tok = PTBTokenizer()
    t_refs = {k: v[0] for k, v in tok.tokenize({k: [{"caption": v}] for k, v in REFS.items()}).items()}
    t_hyps = {k: v[0] for k, v in tok.tokenize({k: [{"caption": v}] for k, v in hyps.items()}).items()}
    want = _cider_d(t_refs, t_hyps)
    for k in REFS:
        assert got.cider_per_image[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12)
    assert got.cider == pytest.approx(sum(want.values()) / 3)
    assert 0 < got.cider < 10


@pytest.mark.slow
def test_meteor_is_the_jar_run_on_its_own(java, tmp_path):
    """The corpus METEOR equals what the METEOR 1.5 jar prints when run directly on the tokenized files."""
    import pycocoevalcap.meteor.meteor as meteor_mod
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    hyps = {"a": "the tennis court is at the top left", "b": "storage tanks by the sea", "c": "a pier and a boat"}
    got = caption_scores(REFS, hyps)
    tok = PTBTokenizer()
    ids = sorted(REFS)
    t_refs = tok.tokenize({k: [{"caption": REFS[k]}] for k in ids})
    t_hyps = tok.tokenize({k: [{"caption": hyps[k]}] for k in ids})
    (tmp_path / "ref.txt").write_text("".join(t_refs[k][0] + "\n" for k in ids))
    (tmp_path / "hyp.txt").write_text("".join(t_hyps[k][0] + "\n" for k in ids))
    jar = Path(meteor_mod.__file__).with_name("meteor-1.5.jar")
    out = subprocess.run([java, "-Xmx2G", "-jar", str(jar), str(tmp_path / "hyp.txt"), str(tmp_path / "ref.txt"),
                          "-l", "en", "-norm"], cwd=jar.parent, capture_output=True, text=True, timeout=300,
                         check=True).stdout
    final = float(re.search(r"Final score:\s+([0-9.]+)", out).group(1))
    segments = [float(x) for x in re.findall(r"Segment \d+ score:\s+([0-9.]+)", out)]
    assert got.meteor == pytest.approx(final, abs=1e-9)
    assert [got.meteor_per_image[k] for k in ids] == pytest.approx(segments, abs=1e-9)
    assert 0 < final < 1

"""The text checks on labelled VLM-style sentences (data/sentences.yaml): each passes or fails exactly the checks
its label names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.verification.checks import verify_texts
from tests.pipeline.verification.plans import group_plan, instance_plan, scene_plan

DATA = yaml.safe_load((Path(__file__).parent / "data" / "sentences.yaml").read_text())


def _failed(failures) -> list[str]:
    return sorted({f.check for f in failures})


def _id(case: dict) -> str:
    return (case["text"][:60] or "<empty>").replace(" ", "_")


@pytest.mark.parametrize("case", DATA["instance"], ids=_id)
def test_instance_sentences(case):
    plan, tag = instance_plan(case["category"], case["position"], case.get("bbox"),
                              [tuple(o) for o in case.get("others", [])])
    failures = verify_texts(plan, None, {tag: case["text"]}, {}, None)
    assert _failed(failures) == sorted(case["fails"]), [f.detail for f in failures]
    assert all(f.tier == "instance" and f.tag == tag for f in failures)


@pytest.mark.parametrize("case", DATA["group"], ids=_id)
def test_group_sentences(case):
    plan, tag = group_plan(case["category"], case["count"], case["grid"], case["cell"], case["position"],
                           case.get("bbox"))
    failures = verify_texts(plan, None, {}, {tag: case["text"]}, None)
    assert _failed(failures) == sorted(case["fails"]), [f.detail for f in failures]
    assert all(f.tier == "group" and f.tag == tag for f in failures)


HOLISTIC = [(scene["objects"], case) for scene in DATA["holistic"] for case in scene["cases"]]


@pytest.mark.parametrize("objects, case", HOLISTIC, ids=[_id(c) for _, c in HOLISTIC])
def test_holistic_texts(objects, case):
    failures = verify_texts(scene_plan([tuple(o) for o in objects]), case["text"], {}, {}, None)
    assert _failed(failures) == sorted(case["fails"]), [f.detail for f in failures]
    assert all(f.tier == "holistic" and f.tag == "" for f in failures)


def test_any_text_is_parsed_quickly_and_never_raises():
    """Model output is untrusted: long, looping, unicode or markup-ridden text costs little and raises nothing."""
    import random
    import time

    rng = random.Random(0)
    words = ["the", "plane", "at", "top", "left", "of", "image", "5", "several", "cars", "<p>", "</p>", "[SEG]", "-",
             "marked", "#3", "ß", "İ", "日本", "…", "(", ")", "and", "to", "from", "right", "centre", ".", ",", "no"]
    texts = [" ".join(rng.choice(words) for _ in range(n)) for n in (0, 1, 5, 50, 500, 4000)]
    texts += ["top left " * 2000, "a" * 20000, "<p> plane-1 </p> [SEG] " * 300, "1 2 3 4 5 6 7 8 9 " * 500]
    plan, tag = instance_plan("plane", "top left")
    start = time.perf_counter()
    for text in texts:
        verify_texts(plan, text, {tag: text}, {}, text)
    assert time.perf_counter() - start < 10

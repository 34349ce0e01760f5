"""Our own validation of LMM replies, whatever the server's grammar let through."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.drafting.reply_validation import ReplyInvalid, parse_reply, response_format

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["mark", "sentence"],
          "properties": {"mark": {"type": "integer", "enum": [1, 2]},
                         "sentence": {"type": "string", "pattern": r'^[^"\\\u0000-\u001f]{1,20}$'}}}


@pytest.mark.parametrize("text, reason", [
    ('{"mark": 3, "sentence": "a plane"}', "schema at mark"),
    ('{"mark": 1, "sentence": "' + "x" * 21 + '"}', "schema at sentence"),
    ('{"mark": 1}', "schema at (root)"),
    ('{"mark": 1, "sentence": "ok", "eval": "__import__(1)"}', "schema at (root)"),
    ('{"mark": 1, "sentence": "a pl', "not valid JSON"),
    ("<script>alert(1)</script>", "not valid JSON"),
])
def test_invalid_replies_are_refused_with_the_raw_text(text, reason):
    with pytest.raises(ReplyInvalid, match=re.escape(reason)) as err:
        parse_reply(text, SCHEMA)
    assert err.value.raw == text


def test_valid_reply_and_cut_off_flag():
    assert parse_reply('{"mark": 2, "sentence": "a red roof"}', SCHEMA) == {"mark": 2, "sentence": "a red roof"}
    with pytest.raises(ReplyInvalid, match="cut off"):
        parse_reply('{"mark": 2, "sentence": "a red roof"}', SCHEMA, finish_reason="length")
    assert response_format("x", SCHEMA)["json_schema"]["schema"] is SCHEMA


def test_chained_bounds_collapse_to_one_and_mean_the_same():
    from annotations.ask import MARKUP, PLAIN, bounded_text
    from pipeline.drafting.reply_validation import collapse_repeats

    assert collapse_repeats(bounded_text(2000, MARKUP)["pattern"]) == f"^{MARKUP}{{1,2000}}$"
    assert collapse_repeats(bounded_text(300, PLAIN)["pattern"]) == f"^{PLAIN}{{1,300}}$"
    assert collapse_repeats("^a{1,2}[x]{0,3}$") == "^a{1,2}[x]{0,3}$"  # only character classes, only adjacent runs
    assert collapse_repeats("^[a]{1,2}-[a]{0,3}$") == "^[a]{1,2}-[a]{0,3}$"


@pytest.mark.parametrize("length, ok", [(2000, True), (2001, False), (5000, False)])
def test_an_over_long_reply_is_refused_not_backtracked_for_ever(length, ok):
    """Checked as the server's chained pattern, one character too many backtracks through every split of the
    string (the 2,000-character merge bound never finished); the collapsed pattern refuses it at once."""
    from annotations.ask import MARKUP, bounded_text, object_schema

    schema = object_schema({"description": bounded_text(2000, MARKUP)})
    reply = json.dumps({"description": "x" * length})
    if ok:
        assert parse_reply(reply, schema) == {"description": "x" * length}
    else:
        with pytest.raises(ReplyInvalid, match="breaks its schema at description"):
            parse_reply(reply, schema)

"""Our own validation of LMM replies, whatever the server's grammar let through."""

from __future__ import annotations

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

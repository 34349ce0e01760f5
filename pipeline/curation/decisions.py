"""The decision file a sheet downloads (one per sheet), and the checks a file passes before it is imported.

A decision file is untrusted input: it is size-limited before it is read, parsed strictly (no unknown fields,
no duplicate keys, bounded lengths, every time with a time zone and in the sane range), and every id in it must
point into the export it names.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

FORMAT = "geopixeld-curation-decisions"
VERSION = 1
MAX_BYTES = 16 * 1024 * 1024  # a sheet of 50 patches writes a few kB; this bounds what is parsed at all
EXPORT_ID = r"^[0-9a-f]{16}$"
SHEET_ID = r"^[0-9a-f]{16}-[0-9]{5}$"
SPLIT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The sane range of a decision's time: curation of this dataset began after EARLIEST, and a browser's clock may be
# ahead of the importing machine's by at most SKEW. A time outside it would crash the ledger's reader (a year 9999
# time in -14:00 is year 10000 in UTC) or win the `latest` policy forever.
EARLIEST = datetime(2020, 1, 1, tzinfo=timezone.utc)
SKEW = timedelta(days=1)


class DecisionFileError(ValueError):
    """A decision file that cannot be imported; the message names the file (and the patch and phrase)."""


def _printable(v: str) -> str:
    if _CONTROL.search(v):
        raise ValueError("contains control characters")
    return v


def time_problem(t: datetime, now: datetime) -> str | None:
    """Why `t` (aware) is not a sane decision time at import time `now`, else None (pure)."""
    if t < EARLIEST:
        return f"{t.isoformat()} is before {EARLIEST.date()}"
    if t > now + SKEW:
        return f"{t.isoformat()} is more than {SKEW.days} day after the import time {now.isoformat(timespec='seconds')}"
    return None


def _sane(t: datetime, info: ValidationInfo) -> datetime:
    now = (info.context or {}).get("now") or datetime.now(timezone.utc)
    why = time_problem(t, now)
    if why:
        raise ValueError(why)
    return t.astimezone(timezone.utc)


DecisionTime = Annotated[AwareDatetime, AfterValidator(_sane)]  # with a time zone, in the sane range, as UTC


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PhraseDecision(_Strict):
    tag: str = Field(min_length=1, max_length=200)
    decision: Literal["accept", "reject", "edit"]
    text: str | None = Field(None, max_length=4000, description="The edited sentence (edit only), markup included.")
    at: DecisionTime

    @field_validator("tag", "text")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        return v if v is None else _printable(v)

    @model_validator(mode="after")
    def _text_with_edit(self):
        if (self.decision == "edit") != (self.text is not None):
            raise ValueError("`text` is given with an edit and only with an edit")
        return self


class PatchDecision(_Strict):
    patch_id: str = Field(min_length=1, max_length=300)
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    decision: Literal["accept", "reject", "flag"] | None = None
    note: str = Field("", max_length=2000)
    at: DecisionTime | None = None
    phrases: list[PhraseDecision] = Field(default_factory=list, max_length=2000)

    @field_validator("patch_id", "note")
    @classmethod
    def _printable(cls, v: str) -> str:
        return _printable(v)

    @model_validator(mode="after")
    def _consistent(self):
        if (self.decision is None) != (self.at is None):
            raise ValueError("a patch decision needs its time `at` (and `at` needs a decision)")
        tags = [p.tag for p in self.phrases]
        if len(tags) != len(set(tags)):
            raise ValueError("a phrase is decided twice")
        return self


class DecisionFile(_Strict):
    format: Literal["geopixeld-curation-decisions"]
    version: Literal[1]
    export_id: str = Field(pattern=EXPORT_ID)
    sheet_id: str = Field(pattern=SHEET_ID)
    sheet_file: str = Field(max_length=100)
    split: str = Field(pattern=SPLIT)
    curator: str = Field(min_length=1, max_length=100)
    saved_at: DecisionTime
    generator: str = Field("", max_length=100)
    patches: list[PatchDecision] = Field(max_length=10000)

    @field_validator("curator", "sheet_file", "generator")
    @classmethod
    def _printable(cls, v: str) -> str:
        return _printable(v)

    @field_validator("curator")
    @classmethod
    def _named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the curator's name is empty")
        return v.strip()

    @model_validator(mode="after")
    def _unique(self):
        ids = [p.patch_id for p in self.patches]
        if len(ids) != len(set(ids)):
            raise ValueError("a patch appears twice")
        return self


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _where(raw, loc: tuple) -> str:
    """An error's place in the file's words: `patch 'P..', phrase 'ship-1', field at` (indexes name no one)."""
    words, rest = [], list(loc)
    try:
        if rest[:1] == ["patches"] and len(rest) > 1 and isinstance(rest[1], int):
            patch = raw["patches"][rest[1]]
            words.append(f"patch {patch.get('patch_id')!r}")
            rest = rest[2:]
            if rest[:1] == ["phrases"] and len(rest) > 1 and isinstance(rest[1], int):
                words.append(f"phrase {patch['phrases'][rest[1]].get('tag')!r}")
                rest = rest[2:]
    except (KeyError, IndexError, TypeError, AttributeError):
        words, rest = [], list(loc)
    if rest:
        words.append(f"field {'.'.join(str(x) for x in rest)}")
    return ", ".join(words) or "(top)"


def read_decision_file(path: Path, max_bytes: int = MAX_BYTES, now: datetime | None = None) -> tuple[DecisionFile, bytes]:
    """Parse and validate one file (its bytes come back for hashing); DecisionFileError names what is wrong.

    `now` is the import time that bounds the decisions' times (default: the clock)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DecisionFileError(f"{path}: cannot read the decision file ({exc.strerror or exc})") from exc
    if not path.is_file():
        raise DecisionFileError(f"{path}: not a file")
    if size > max_bytes:
        raise DecisionFileError(f"{path}: {size:,} bytes, over the limit of {max_bytes:,} for a decision file")
    data = path.read_bytes()
    try:
        raw = json.loads(data, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        raise DecisionFileError(f"{path}: not a valid decision file (malformed JSON: {exc})") from exc
    try:
        parsed = DecisionFile.model_validate_json(data, context={"now": now or datetime.now(timezone.utc)})
    except ValidationError as exc:
        where = "; ".join(f"{_where(raw, e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise DecisionFileError(f"{path}: not a valid decision file: {where}") from exc
    return parsed, data

"""Bad input, reported once and clearly: which file, which image, which annotation, and why.

By default a bad record is skipped and listed; with strict mode the first one stops the run.
Repairs (e.g. a self-intersecting polygon fixed with shapely) are listed as warnings and never stop a run.
"""

from __future__ import annotations

import json
import reprlib
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Issue:
    kind: str  # short machine-readable reason, e.g. "polygon-too-few-points"
    file: str  # the file that holds the bad record
    message: str
    image: str | None = None  # image name or id
    ann_id: int | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = [printable(self.file)]
        if self.image is not None:
            where.append(f"image {printable(self.image)}")
        if self.ann_id is not None:
            where.append(f"annotation {self.ann_id}")
        return f"{', '.join(where)}: {self.message} [{self.kind}]"


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 3, 80, 80, 40


def brief(value) -> str:
    """A short repr of a bad value for a message: bounded in length and depth (a record may nest 900 deep)."""
    return _BRIEF.repr(value)


def printable(text: str) -> str:
    """`text` as is, or escaped when it holds NUL, control or unencodable characters (a one-line report)."""
    return text if text.isprintable() and _encodable(text) else ascii(text)[1:-1]


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BadRecord(Exception):
    """Raised in strict mode (and for input that no run can go on without)."""

    def __init__(self, issue: Issue):
        super().__init__(str(issue))
        self.issue = issue


class Quarantine:
    """Collects issues; in strict mode the first error raises `BadRecord`."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.issues: list[Issue] = []

    def report(self, issue: Issue) -> None:
        if self.strict and issue.severity == "error":
            raise BadRecord(issue)
        self.issues.append(issue)

    def extend(self, issues: list[Issue]) -> None:
        for issue in issues:
            self.report(issue)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]


def issues_to_jsonl(issues: list[Issue]) -> str:
    return "".join(json.dumps(asdict(i), sort_keys=True) + "\n" for i in issues)


def issues_from_dicts(rows: list[dict]) -> list[Issue]:
    return [Issue(**r) for r in rows]


def format_report(issues: list[Issue], limit: int = 20) -> str:
    """The end-of-run summary: counts per kind, then the first `limit` issues in full."""
    if not issues:
        return "Quarantine: nothing skipped, nothing repaired."
    counts = Counter((i.severity, i.kind) for i in issues)
    n_err = sum(v for (sev, _), v in counts.items() if sev == "error")
    lines = [f"Quarantine: {n_err} record(s) skipped, {len(issues) - n_err} repaired or warned."]
    for (sev, kind), n in sorted(counts.items()):
        lines.append(f"  {n:6d}  {sev:7s}  {kind}")
    lines.append("First entries:")
    lines.extend(f"  - {i}" for i in issues[:limit])
    if len(issues) > limit:
        lines.append(f"  ... and {len(issues) - limit} more (see quarantine.jsonl)")
    return "\n".join(lines)

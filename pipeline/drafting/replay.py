"""Drafts made elsewhere (a batch API, another team's run, a hand-written set), replayed as LMM replies.

`geopixeld draft OUT --split S --drafter replay --replies FILE.jsonl` reads one JSON object per line,
`{"patch_id": ..., "tier": "holistic" | "instance" | "group" | "merge", "tag": ..., "text": ...}` (`tag`: the
instance or group tag, empty for holistic and merge), and answers each request of the LMM drafter from it, so a
replayed text goes through the same schema validation, grounding, merge and verification as a served reply. A
tier text the file lacks is a failed reply; without a merge line the deterministic assembly is used. The file is
untrusted input: every line is checked before any drafting starts, and an error names the file and the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.contracts.fileio import path_kind, sha256_file

TIERS = ("holistic", "instance", "group", "merge")
KEYS = {"patch_id", "tier", "tag", "text"}
REPLAY_VERSION = "1"
# the reply field each tier's schema asks for (annotations: holistic and merge {"description"}, else {"sentence"})
_FIELD = {"holistic": "description", "merge": "description", "instance": "sentence", "group": "sentence"}


class ReplayError(ValueError):
    """A replies file that cannot be replayed: the message names the file and the line."""


@dataclass(frozen=True)
class Replies:
    """The texts of a replies file by (patch id, tier, tag), with the line each came from."""

    path: Path
    sha256: str
    texts: dict[tuple[str, str, str], tuple[str, int]]

    def patches(self) -> set[str]:
        return {p for p, _, _ in self.texts}

    def has(self, patch_id: str, tier: str, tag: str = "") -> bool:
        return (patch_id, tier, tag) in self.texts

    def reply(self, patch_id: str, tier: str, tag: str = "") -> str | None:
        """The text as the JSON reply the tier's request expects (validated like a served reply), or None."""
        found = self.texts.get((patch_id, tier, tag))
        return None if found is None else json.dumps({_FIELD[tier]: found[0]})

    def line_of(self, patch_id: str, tier: str, tag: str = "") -> int:
        return self.texts[(patch_id, tier, tag)][1]

    def provenance(self) -> str:
        """What a replayed record's provenance names: the file and its sha256 (JSON, like the LMM's sampling)."""
        return json.dumps({"replies": str(self.path), "sha256": self.sha256}, sort_keys=True)


def _line_problem(obj) -> str | None:
    if not isinstance(obj, dict):
        return f"a line must hold a JSON object, not {type(obj).__name__}"
    if set(obj) != KEYS:
        extra, missing = sorted(set(obj) - KEYS), sorted(KEYS - set(obj))
        return "; ".join(filter(None, [f"unknown key(s) {extra}" if extra else "",
                                       f"missing key(s) {missing}" if missing else ""]))
    bad = [k for k in sorted(KEYS) if not isinstance(obj[k], str)]
    if bad:
        return f"{', '.join(bad)} must be text"
    if obj["tier"] not in TIERS:
        return f"tier {obj['tier']!r} is not one of {', '.join(TIERS)}"
    if not obj["patch_id"].strip():
        return "patch_id is empty"
    if obj["tier"] in ("holistic", "merge") and obj["tag"]:
        return f"a {obj['tier']} line has an empty tag, not {obj['tag']!r}"
    if obj["tier"] in ("instance", "group") and not obj["tag"].strip():
        return f"an {obj['tier']} line needs the tag of its instance or group"
    return None


def read_replies(path: Path) -> Replies:
    """Read and check a replies file (one JSON object per line; blank lines are skipped)."""
    path = Path(path)
    kind = path_kind(path)
    if kind != "regular":
        raise ReplayError(f"{path}: the replies file is {kind}, not a regular file")
    texts: dict[tuple[str, str, str], tuple[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ReplayError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ReplayError(f"{path} line {n}: not JSON ({exc})") from None
        why = _line_problem(obj)
        if why:
            raise ReplayError(f"{path} line {n}: {why}")
        key = (obj["patch_id"], obj["tier"], obj["tag"])
        if key in texts:
            what = f"{obj['tier']} text of {obj['tag']!r}" if obj["tag"] else f"{obj['tier']} text"
            raise ReplayError(f"{path} line {n}: a second {what} for patch {obj['patch_id']!r} (first on line "
                              f"{texts[key][1]})")
        texts[key] = (obj["text"], n)
    if not texts:
        raise ReplayError(f"{path}: no reply lines")
    return Replies(path, sha256_file(path), texts)


def check_patches(replies: Replies, planned: set[str], split: str) -> None:
    """Every line names a planned patch of the split (a wrong split or file would otherwise replay nothing)."""
    unknown = sorted(replies.patches() - planned)
    if unknown:
        first = min((replies.texts[k][1], k[0]) for k in replies.texts if k[0] in set(unknown))
        more = f" (and {len(unknown) - 1} more patches)" if len(unknown) > 1 else ""
        raise ReplayError(f"{replies.path} line {first[0]}: patch {first[1]!r} is not planned in split {split!r}{more}")


def check_tags(replies: Replies, patch_id: str, tags: dict[str, set[str]]) -> None:
    """Every instance and group line of a patch names one of its planned tags of that tier (`tags`: tier -> tags)."""
    for (pid, tier, tag), (_, n) in sorted(replies.texts.items(), key=lambda kv: kv[1][1]):
        if pid == patch_id and tier in tags and tag not in tags[tier]:
            raise ReplayError(f"{replies.path} line {n}: patch {patch_id!r} has no {tier} {tag!r} "
                              f"(its {tier} tags: {', '.join(sorted(tags[tier])) or 'none'})")

"""Which decision holds when a patch was decided more than once (pure).

Each curator's latest decision on an item (the patch, or one phrase) counts; a curator changing their mind is
no disagreement. Curators disagree when their latest decisions on an item differ (an edit differs from another
edit when the texts differ; a flag's note is not compared). Policies:

- `latest`: the most recent decision wins (disagreements are still reported);
- `third-look`: the decision held by more curators than any other wins; a tie (two curators who disagree, with
  nobody else) leaves the patch pending until another curator decides it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.curation.content import Decided, Resolution, normalize_text

POLICIES = ("latest", "third-look")


@dataclass(frozen=True)
class Conflict:
    patch_id: str
    item: str  # "patch", or the phrase's tag
    decisions: dict  # curator -> decision ("edit: <text>" for edits)
    settled: str | None  # the decision that holds; None: the patch needs another look

    def line(self) -> str:
        who = "; ".join(f"{c}: {d}" for c, d in sorted(self.decisions.items()))
        return (f"{self.patch_id} [{self.item}] {who} -> "
                + (f"{self.settled} holds" if self.settled else "needs a third look"))


def _order(row: dict) -> tuple:
    return (row["decided_at"], row["imported_at"], row["decision_file_sha256"], row["seq"])


def _value(row: dict) -> str:
    if row["decision"] == "edit":
        return f"edit: {normalize_text(row['text'] or '')}"
    return row["decision"]


def _settle(patch_id: str, item: str, rows: list[dict], policy: str) -> tuple[dict | None, Conflict | None]:
    latest: dict[str, dict] = {}
    for r in sorted(rows, key=_order):
        latest[r["curator"]] = r  # sorted: the last one seen is each curator's latest
    values = {c: _value(r) for c, r in latest.items()}
    newest = max(latest.values(), key=_order)
    if len(set(values.values())) <= 1:
        return newest, None
    if policy == "latest":
        return newest, Conflict(patch_id, item, values, _value(newest))
    tally: dict[str, int] = {}
    for v in values.values():
        tally[v] = tally.get(v, 0) + 1
    best = max(tally.values())
    leaders = [v for v, n in tally.items() if n == best]
    if len(leaders) > 1:
        return None, Conflict(patch_id, item, values, None)
    winner = max((r for r in latest.values() if _value(r) == leaders[0]), key=_order)
    return winner, Conflict(patch_id, item, values, leaders[0])


def resolve(patch_id: str, rows: list[dict], policy: str) -> tuple[Resolution, list[Conflict]]:
    """The decisions that hold for one patch, from its ledger rows (already limited to its current content)."""
    if policy not in POLICIES:
        raise ValueError(f"curation policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    items: dict[str, list[dict]] = {}
    for r in rows:
        items.setdefault("patch" if r["level"] == "patch" else f"phrase:{r['tag']}", []).append(r)
    res, conflicts = Resolution(), []
    for key, item_rows in sorted(items.items()):
        row, conflict = _settle(patch_id, key.removeprefix("phrase:"), item_rows, policy)
        if conflict:
            conflicts.append(conflict)
        if row is None:
            res.needs_look = True
            continue
        d = Decided(row["decision"], row["decided_at"], row["curator"], row["text"])
        if key == "patch":
            res.patch = d
        else:
            res.phrases[row["tag"]] = d
    return res, conflicts

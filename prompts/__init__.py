"""Prompt templates for the LMM drafting stage: one per tier plus the merge, the paper's wording by default.

Templates are plain text with `{field}` slots; `render` fills only simple names (no attribute or index
access), so a template from a user's folder cannot reach into the objects it is given.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
NAMES = ("holistic", "instance", "instance_batch", "group", "merge", "judge_instance", "judge_group")
JUDGE = ("judge_instance", "judge_group")  # the optional LMM judge's (annotations/judge.py)


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @property
    def fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.text) if f is not None}

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def render(self, **values: object) -> str:
        """Fill the template's slots; values it has no slot for are ignored (overrides may use more of them)."""
        missing = self.fields - values.keys()
        if missing:
            raise KeyError(f"prompt {self.name!r} needs {sorted(missing)}")
        return self.text.format_map({k: str(values[k]) for k in self.fields}).strip()


def load(name: str, folder: Path | None = None) -> Template:
    """A template by name, from `folder` when it has one (user overrides), else the bundled default."""
    if name not in NAMES:
        raise KeyError(f"unknown prompt {name!r}; known: {', '.join(NAMES)}")
    path = (Path(folder) / f"{name}.txt") if folder and (Path(folder) / f"{name}.txt").exists() else HERE / f"{name}.txt"
    t = Template(name, path.read_text())
    bad = [f for f in t.fields if not f.isidentifier()]
    if bad:
        raise ValueError(f"{path}: template fields must be plain names, not {bad}")
    return t

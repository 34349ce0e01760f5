"""METEOR and CIDEr through pycocoevalcap, the way its COCOEvalCap (and so GLaMM) computes them.

Both sides go through the Stanford PTB tokenizer (lower case, punctuation dropped), then pycocoevalcap's
Meteor (METEOR 1.5 jar, `-l en -norm`) and Cider (CIDEr-D, n=4, sigma=6) score the corpus. Java runs both the
tokenizer and METEOR; the METEOR process is started once per Python process and reused.
"""

from __future__ import annotations

import atexit
import shutil
import threading
from dataclasses import dataclass

_METEOR = None
_LOCK = threading.Lock()
_ATEXIT: list = []
JAVA_HINT = ("METEOR and the PTB tokenizer run Java (a `java` on PATH); install a JRE, e.g. "
             "`apt-get install default-jre-headless`")


class JavaMissing(RuntimeError):
    """No usable Java for pycocoevalcap's jars."""


@dataclass
class CaptionScores:
    meteor: float  # corpus METEOR as the jar aggregates it (what COCOEvalCap reports), 0..1
    cider: float  # corpus CIDEr-D (mean of the per-image scores), 0..10
    meteor_per_image: dict[str, float]
    cider_per_image: dict[str, float]


def caption_scores(refs: dict[str, str], hyps: dict[str, str]) -> CaptionScores:
    """Score hypothesis captions against one reference each; both dicts keyed by the same image ids."""
    if refs.keys() != hyps.keys():
        raise ValueError("references and hypotheses must cover the same images")
    if not refs:
        return CaptionScores(0.0, 0.0, {}, {})
    if shutil.which("java") is None:
        raise JavaMissing(JAVA_HINT)
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = sorted(refs)
    tok = PTBTokenizer()
    # "|||" separates fields in the METEOR jar's protocol; pycocoevalcap cleans only the hypothesis
    gts = tok.tokenize({i: [{"caption": refs[i].replace("|||", " ")}] for i in ids})
    res = tok.tokenize({i: [{"caption": hyps[i].replace("|||", " ")}] for i in ids})
    if set(gts) != set(ids) or set(res) != set(ids):
        raise RuntimeError("the PTB tokenizer returned fewer captions than it was given (is Java working?)")
    gts = {i: gts[i] for i in ids}
    res = {i: res[i] for i in ids}
    cider, cider_each = Cider().compute_score(gts, res)
    meteor, meteor_each = _meteor_scores(gts, res)
    return CaptionScores(float(meteor), float(cider), dict(zip(ids, map(float, meteor_each))),
                         dict(zip(ids, map(float, cider_each))))


def _meteor_scores(gts: dict, res: dict) -> tuple[float, list[float]]:
    global _METEOR
    from pycocoevalcap.meteor.meteor import Meteor

    with _LOCK:
        if _METEOR is None or _METEOR.meteor_p.poll() is not None:
            try:
                _METEOR = Meteor()
            except OSError as exc:
                raise JavaMissing(f"{JAVA_HINT} ({exc})") from exc
            if not _ATEXIT:
                _ATEXIT.append(atexit.register(_close_meteor))
        try:
            return _METEOR.compute_score(gts, res)
        except (ValueError, BrokenPipeError) as exc:  # the jar died: its stderr says why
            bad, _METEOR = _METEOR, None
            bad.lock = threading.Lock()  # compute_score left its lock held; its __del__ would wait forever
            proc = bad.meteor_p
            proc.kill()
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise JavaMissing(f"the METEOR jar failed ({exc}); {err.strip() or JAVA_HINT}") from exc


def _close_meteor() -> None:
    global _METEOR
    m, _METEOR = _METEOR, None
    if m is not None and m.meteor_p.poll() is None:
        m.meteor_p.stdin.close()
        m.meteor_p.kill()
        m.meteor_p.wait()

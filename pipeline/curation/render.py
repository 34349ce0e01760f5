"""One curation sheet as a self-contained HTML file: patch images as data: URLs, masks as SVG paths, the phrases
coloured like their masks, and the sheet's script and style inline under a Content-Security-Policy that allows
nothing else (no network, no other script, no inline handlers).

Descriptions come from an LMM: every text is HTML-escaped here, and the JSON the script reads is escaped so that
no `</script>` or `<!--` can end its block; the script itself only ever writes text with `textContent`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from html import escape
from importlib import resources

import cv2
import numpy as np

from pipeline.contracts import masks
from pipeline.contracts.gcg_schema import GCGRecord
from pipeline.contracts.grounding import PHRASE_RE
from pipeline.curation.content import segments

SHEET_FORMAT = "geopixeld-curation-sheet"


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def colour(i: int) -> str:
    """Phrase i's colour in every patch: hues a golden angle apart, so neighbours differ."""
    return f"hsl({(i * 137.508 + 12) % 360:.0f} 88% 52%)"


def mask_path(rle: dict) -> str:
    """SVG path data of a mask (outer contours and holes, drawn with the even-odd rule)."""
    m = masks.decode(rle)
    contours, _ = cv2.findContours(np.ascontiguousarray(m, dtype=np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    parts = []
    for c in contours:
        pts = c[:, 0, :]
        if len(pts) == 1:  # a single pixel: draw its square
            x, y = pts[0]
            parts.append(f"M{x} {y}h1v1h-1Z")
            continue
        parts.append("M" + " ".join(f"{x} {y}" for x, y in pts.tolist()) + "Z")
    return "".join(parts)


@dataclass
class PatchView:
    """Everything one patch of a sheet shows (built by the export from a record and its plan)."""

    record: GCGRecord
    content_sha256: str
    image: tuple[str, bytes] | None  # (mime type, bytes)
    marks: list[dict] = field(default_factory=list)


def _e(text) -> str:
    return escape("" if text is None else str(text), quote=True)


def _segment_html(text: str, index: dict[str, int]) -> str:
    out, pos = [], 0
    for m in PHRASE_RE.finditer(text):
        out.append(_e(text[pos : m.start()]))
        i = index.get(m["text"])
        out.append(f'<mark class="ph c{i}" data-i="{i}" tabindex="0">{_e(m["text"])}</mark>' if i is not None else _e(m[0]))
        pos = m.end()
    out.append(_e(text[pos:]))
    return "".join(out)


def _figure(v: PatchView) -> str:
    r = v.record
    w, h = int(r.width), int(r.height)
    parts = [f'<svg class="fig" viewBox="0 0 {w} {h}" role="img" aria-label="patch {_e(r.patch_id)} with its masks">']
    if v.image:
        mime, data = v.image
        parts.append(f'<image href="data:{mime};base64,{base64.b64encode(data).decode()}" x="0" y="0" width="{w}" '
                     f'height="{h}" preserveAspectRatio="none"/>')
    else:
        parts.append(f'<rect width="{w}" height="{h}" fill="#444"/><text x="12" y="28" fill="#fff">no patch image</text>')
    order = sorted(range(len(r.phrases)), key=lambda i: -masks.area(r.phrases[i].rle))  # small masks on top
    parts.append('<g class="masks">')
    for i in order:
        parts.append(f'<path class="mask c{i}" data-i="{i}" fill-rule="evenodd" d="{mask_path(r.phrases[i].rle)}">'
                     f'<title>{_e(r.phrases[i].tag)}</title></path>')
    parts.append("</g>")
    parts.append(f'<g class="grid"><path d="M{w / 3:.1f} 0V{h}M{2 * w / 3:.1f} 0V{h}M0 {h / 3:.1f}H{w}M0 {2 * h / 3:.1f}H{w}"/></g>')
    parts.append('<g class="marks">')
    for mk in v.marks:
        s = int(mk["size"])
        x, y = int(mk["x"]) - s // 2, int(mk["y"]) - s // 2
        parts.append(f'<rect x="{x}" y="{y}" width="{s}" height="{s}"/><text x="{int(mk["x"])}" y="{int(mk["y"])}" '
                     f'font-size="{max(8, int(s * 0.7))}" text-anchor="middle" dominant-baseline="central">'
                     f'{int(mk["number"])}</text>')
    parts.append("</g></svg>")
    return "".join(parts)


def _phrase_flags(checks, tag: str) -> str:
    """The verification's failed checks of one phrase's tier text, beside it (the detail on hover and in text)."""
    mine = [c for c in checks if c.tag == tag]
    return "".join(f'<span class="flag" title="{_e(c.detail)}">{_e(c.check)}: {_e(c.detail)}</span>' for c in mine)


def _patch_html(k: int, n: int, v: PatchView) -> tuple[str, dict]:
    r = v.record
    pid = r.patch_id
    drafter = (r.provenance.drafter if r.provenance else None) or "?"
    data = {"id": pid, "hash": v.content_sha256, "ok": r.status == "ok", "phrases": [], "segs": []}
    checks = r.checks or []
    flags = f" · {len(checks)} failed checks" if checks else ""
    head = (f'<h2 id="h-{k}"><span>{k + 1}/{n}</span> <span class="pid">{_e(pid)}</span> '
            f'<span class="meta">{_e(drafter)} drafter · {_e(r.status)} · {len(r.phrases)} phrases{flags}</span> '
            f'<span class="pstate" aria-live="polite">undecided</span></h2>')
    side = []
    whole = [c for c in checks if not c.tag]  # the holistic text's and the merged description's
    if whole:
        side.append('<ul class="flags">' + "".join(
            f'<li class="flag"><b>{_e(c.tier)} · {_e(c.check)}</b>: {_e(c.detail)}</li>' for c in whole) + "</ul>")
    if r.status == "ok" and r.description is not None:
        index = {p.tag: i for i, p in enumerate(r.phrases)}
        segs = segments(r.description)
        seg_of = {t: j for j, s in enumerate(segs) for t in s.tags}
        data["segs"] = [{"text": r.description[s.start : s.end], "tags": list(s.tags)} for s in segs]
        data["phrases"] = [{"tag": p.tag, "seg": seg_of[p.tag]} for p in r.phrases]
        side.append('<p class="desc">' + "".join(
            f'<span class="seg" data-s="{j}">{_segment_html(r.description[s.start : s.end], index)}</span>{_e(s.sep)}'
            for j, s in enumerate(segs)) + "</p>")
        side.append('<ol class="phrases">')
        for i, p in enumerate(r.phrases):
            side.append(
                f'<li class="prow" data-i="{i}" tabindex="-1"><span class="chip c{i}">{_e(p.tag)} '
                f'<span class="kind">{_e(p.tier)}</span></span>{_phrase_flags(checks, p.tag)}<span class="state"></span>'
                '<span class="acts">'
                '<button type="button" data-act="accept">Accept <kbd>a</kbd></button>'
                '<button type="button" data-act="reject">Reject <kbd>r</kbd></button>'
                '<button type="button" data-act="edit">Edit <kbd>e</kbd></button>'
                '<button type="button" data-act="undo" title="undo this phrase\'s decision">Undo <kbd>u</kbd></button></span>'
                '<div class="editor" hidden><textarea aria-label="edited sentence" maxlength="4000" spellcheck="true">'
                '</textarea><button type="button" data-act="save">Save <kbd>Ctrl+Enter</kbd></button>'
                '<button type="button" data-act="cancel">Cancel <kbd>Esc</kbd></button><p class="err" role="alert"></p>'
                "</div></li>")
        side.append("</ol>")
    else:
        side.append(f'<p class="failed">Failed grounding: {_e(r.error)}</p>')
        drafts = [("holistic", r.holistic)] + [(t.tag, t.text) for t in r.instance_texts + r.group_texts]
        side.append('<ul class="drafts">' + "".join(f"<li><b>{_e(t)}</b>: {_e(x)}</li>" for t, x in drafts if x) + "</ul>")
    side.append(
        '<div class="pctl"><button type="button" data-act="paccept">Accept patch <kbd>A</kbd></button>'
        '<button type="button" data-act="preject">Reject patch <kbd>R</kbd></button>'
        '<button type="button" data-act="pflag">Flag <kbd>F</kbd></button>'
        '<button type="button" data-act="pundo">Undo <kbd>U</kbd></button>'
        '<input class="note" type="text" maxlength="2000" placeholder="note (with a flag: F, type, Enter)" '
        'aria-label="note on this patch"></div>')
    html = (f'<section class="patch" id="patch-{k}" data-k="{k}" tabindex="-1" aria-labelledby="h-{k}">{head}'
            f'<div class="body">{_figure(v)}<div class="side">{"".join(side)}</div></div></section>')
    return html, data


_KEYS = [("j / k, ↓ / ↑", "next / previous patch"), ("l / h, → / ←", "next / previous phrase (highlights its mask)"),
         ("a", "accept the phrase"), ("r", "reject the phrase"), ("e", "edit the phrase's sentence (the tag stays); "
         "Ctrl+Enter saves, Esc cancels"), ("u", "undo the phrase's decision"),
         ("A", "accept the patch (and its undecided phrases)"), ("R", "reject the patch"),
         ("F", "flag the patch: type a note, Enter"), ("U", "undo the patch's decision"), ("n", "next undecided patch"),
         ("m / g", "marks / grid on or off"), ("d", "download the decisions (JSON)"), ("?", "this help")]


def _json_for_script(obj) -> str:
    """JSON safe inside <script type=application/json>: no `<`, `>` or `&` that could end or comment the block."""
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            .replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render_sheet(views: list[PatchView], *, export_id: str, sheet_id: str, sheet_file: str, split: str, sheet_no: int,
                 sheets: int, generator: str) -> str:
    """The sheet's HTML (a pure function of its inputs: the same patches give the same bytes)."""
    n = len(views)
    n_colours = max([len(v.record.phrases) for v in views] + [1])
    css = _asset("sheet.css") + "".join(f".c{i}{{--c:{colour(i)}}}" for i in range(n_colours)) + "\n"
    js = _asset("sheet.js")
    if "</script" in js.lower() or "</style" in css.lower():
        raise ValueError("sheet assets must not contain closing script/style tags")
    bodies, data = [], []
    for k, v in enumerate(views):
        html, d = _patch_html(k, n, v)
        bodies.append(html)
        data.append(d)
    sheet_data = {"format": SHEET_FORMAT, "version": 1, "export_id": export_id, "sheet_id": sheet_id,
                  "sheet_file": sheet_file, "split": split, "generator": generator, "patches": data}
    csp = (f"default-src 'none'; img-src data:; style-src {csp_hash(css)}; script-src {csp_hash(js)}; "
           "base-uri 'none'; form-action 'none'; object-src 'none'")
    keys = "".join(f"<tr><td><kbd>{_e(k)}</kbd></td><td>{_e(t)}</td></tr>" for k, t in _KEYS)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">'
        '<meta name="referrer" content="no-referrer"><meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>Curation {_e(split)} · sheet {sheet_no + 1}/{sheets} · {_e(sheet_id)}</title>"
        f"<style>{css}</style></head>\n<body>"
        f'<header><h1>Curation · {_e(split)} · sheet {sheet_no + 1} of {sheets} <code>{_e(sheet_id)}</code></h1>'
        '<label>Curator <input id="curator" type="text" maxlength="100" autocomplete="name" placeholder="your name"></label>'
        '<span id="left" aria-live="polite"></span>'
        '<button type="button" data-act="marks" aria-pressed="true">Marks <kbd>m</kbd></button>'
        '<button type="button" data-act="grid" aria-pressed="true">Grid <kbd>g</kbd></button>'
        '<button type="button" data-act="download">Download decisions <kbd>d</kbd></button>'
        '<button type="button" data-act="help">Keys <kbd>?</kbd></button>'
        '<span id="saved" aria-live="polite"></span><span id="warn" role="alert"></span></header>'
        f'<div id="help" hidden><table>{keys}</table></div>'
        "<noscript><p>This sheet needs JavaScript to record decisions.</p></noscript>\n"
        f"<main>{''.join(bodies)}</main>\n"
        f'<script type="application/json" id="sheet-data">{_json_for_script(sheet_data)}</script>\n'
        f"<script>{js}</script></body></html>\n"
    )


def render_index(split: str, export_id: str, sheets: list[dict]) -> str:
    """A page listing the sheets of an export (plain links to the files beside it)."""
    rows = "".join(f'<li><a href="{_e(s["file"])}">{_e(s["file"])}</a> · {len(s["patches"])} patches</li>' for s in sheets)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
            f"<title>Curation sheets {_e(split)} {_e(export_id)}</title></head><body>"
            f"<h1>Curation sheets · {_e(split)} · export {_e(export_id)}</h1><ol>{rows}</ol>"
            "<p>Open a sheet, decide, press <kbd>d</kbd> to download its decisions, then run "
            "<code>geopixeld curate import OUT FILE...</code>.</p></body></html>\n")

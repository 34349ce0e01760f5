// geopixeld curation sheet: decisions per phrase and per patch, kept in localStorage, downloaded as JSON.
// Every text shown comes from the sheet's JSON data block and goes into the page with textContent only.
(() => {
  "use strict";
  const D = JSON.parse(document.getElementById("sheet-data").textContent);
  const KEY = "geopixeld-curation:" + D.sheet_id;
  const CURATOR_KEY = "geopixeld-curator";
  const PHRASE = /<p>\s*(.*?)\s*<\/p>\s*\[SEG\]/gs;
  const MARKUP = /<\/?p>|\[SEG\]/g;
  const LABEL = { accept: "accepted", reject: "rejected", edit: "edited", flag: "flagged" };
  const PATCH_DECISIONS = ["accept", "reject", "flag"];
  const PHRASE_DECISIONS = ["accept", "reject", "edit"];
  const sections = Array.from(document.querySelectorAll("section.patch"));
  const $ = (id) => document.getElementById(id);
  const left = $("left"), saved = $("saved"), warn = $("warn"), curatorInput = $("curator"), help = $("help");
  const P = new Map(); // patch id -> {decision, note, at, phrases: Map(tag -> {decision, text, at})}
  let cur = 0, curPh = -1;

  const now = () => new Date().toISOString();
  const norm = (s) => s.replace(/\s+/g, " ").trim();
  const say = (el, text) => { el.textContent = text; };

  // ---- state: restore, save -------------------------------------------------------------------------
  function restore() {
    let raw = null;
    try { raw = localStorage.getItem(KEY); } catch (e) { say(warn, "Browser storage is off: download your decisions often."); }
    if (!raw) return;
    let s;
    try { s = JSON.parse(raw); } catch (e) { return; }
    if (!s || s.sheet_id !== D.sheet_id || !Array.isArray(s.patches)) return;
    const known = new Map(D.patches.map((p) => [p.id, p]));
    for (const entry of s.patches) {
      try { restoreOne(known, entry); } catch (e) { /* an entry this sheet did not write: ignored */ }
    }
    if (typeof s.curator === "string" && s.curator) curatorInput.value = s.curator;
  }

  function restoreOne(known, entry) {
    if (!Array.isArray(entry) || !known.has(entry[0]) || typeof entry[1] !== "object" || !entry[1]) return;
    const p = known.get(entry[0]), r = entry[1];
    const tags = new Set(p.phrases.map((ph) => ph.tag));
    const phrases = new Map();
    for (const [tag, d] of Array.isArray(r.phrases) ? r.phrases : []) {
      if (!tags.has(tag) || !d || !PHRASE_DECISIONS.includes(d.decision) || typeof d.at !== "string") continue;
      if (d.decision === "edit" && typeof d.text !== "string") continue;
      phrases.set(tag, d.decision === "edit" ? { decision: "edit", text: d.text, at: d.at } : { decision: d.decision, at: d.at });
    }
    const decision = PATCH_DECISIONS.includes(r.decision) && typeof r.at === "string" ? r.decision : null;
    P.set(p.id, { decision, at: decision ? r.at : null, note: typeof r.note === "string" ? r.note : "", phrases });
  }

  function save() {
    const s = { sheet_id: D.sheet_id, curator: curatorInput.value, updated: now(),
      patches: Array.from(P, ([id, r]) => [id, { decision: r.decision, at: r.at, note: r.note, phrases: Array.from(r.phrases) }]) };
    try {
      localStorage.setItem(KEY, JSON.stringify(s));
      say(saved, "saved in this browser " + new Date().toLocaleTimeString());
    } catch (e) {
      say(warn, "NOT saved in the browser (storage unavailable or full): download your decisions now.");
    }
  }

  function rec(k, create) {
    const id = D.patches[k].id;
    let r = P.get(id);
    if (!r && create) { r = { decision: null, at: null, note: "", phrases: new Map() }; P.set(id, r); }
    return r;
  }

  // ---- text: segments, edits ------------------------------------------------------------------------
  function segText(k, j) {
    const p = D.patches[k], r = rec(k);
    let best = null;
    if (r) for (const tag of p.segs[j].tags) {
      const d = r.phrases.get(tag);
      if (d && d.decision === "edit" && (!best || d.at > best.at)) best = d;
    }
    return best ? best.text : p.segs[j].text;
  }

  function phraseIndex(k) {
    const m = new Map();
    D.patches[k].phrases.forEach((ph, i) => m.set(ph.tag, i));
    return m;
  }

  function renderSeg(el, text, k) {
    const idx = phraseIndex(k);
    el.replaceChildren();
    let pos = 0;
    for (const m of text.matchAll(PHRASE)) {
      if (m.index > pos) el.append(document.createTextNode(text.slice(pos, m.index)));
      if (idx.has(m[1])) {
        const i = idx.get(m[1]);
        const mark = document.createElement("mark");
        mark.className = "ph c" + i;
        mark.dataset.i = String(i);
        mark.tabIndex = 0;
        mark.textContent = m[1];
        el.append(mark);
      } else {
        el.append(document.createTextNode(m[0]));
      }
      pos = m.index + m[0].length;
    }
    if (pos < text.length) el.append(document.createTextNode(text.slice(pos)));
  }

  // The same rules as pipeline/curation/content.py:check_edit (the import checks again).
  function checkEdit(text, k, i) {
    const p = D.patches[k], tag = p.phrases[i].tag, seg = p.segs[p.phrases[i].seg], r = rec(k);
    if (!text) return "The text is empty: reject the phrase instead.";
    const found = Array.from(text.matchAll(PHRASE), (m) => m[1]);
    const rest = (text.replace(PHRASE, "") + " " + found.join(" ")).match(MARKUP);
    if (rest) return "Unbalanced grounding markup " + rest.slice(0, 3).join(" ") + ": every phrase is <p> tag </p> [SEG].";
    for (const t of found) if (!seg.tags.includes(t)) return "Phrase '" + t + "' is not one of this sentence's phrases.";
    const seen = new Set();
    for (const t of found) { if (seen.has(t)) return "Phrase '" + t + "' appears more than once."; seen.add(t); }
    for (const t of seg.tags) {
      const d = r && r.phrases.get(t);
      const keep = t === tag || !(d && d.decision === "reject");
      if (keep && !seen.has(t)) return "The tag must stay: <p> " + t + " </p> [SEG] is missing.";
    }
    return null;
  }

  // ---- painting -------------------------------------------------------------------------------------
  function paint(k) {
    const sec = sections[k], p = D.patches[k], r = rec(k);
    sec.classList.remove("d-accept", "d-reject", "d-flag");
    if (r && r.decision) sec.classList.add("d-" + r.decision);
    say(sec.querySelector(".pstate"), r && r.decision ? LABEL[r.decision] + (r.note ? ": " + r.note : "") : "undecided");
    const note = sec.querySelector("input.note");
    if (note && document.activeElement !== note) note.value = r ? r.note : "";
    p.phrases.forEach((ph, i) => {
      const d = r && r.phrases.get(ph.tag);
      for (const el of sec.querySelectorAll('[data-i="' + i + '"]')) {
        el.classList.remove("d-accept", "d-reject", "d-edit");
        if (d) el.classList.add("d-" + d.decision);
      }
      const row = sec.querySelector('.prow[data-i="' + i + '"]');
      say(row.querySelector(".state"), d ? LABEL[d.decision] : "");
    });
    p.segs.forEach((s, j) => {
      const el = sec.querySelector('.seg[data-s="' + j + '"]');
      const text = segText(k, j);
      const shown = el.dataset.shown === undefined ? s.text : el.dataset.shown;
      if (text !== shown) {
        renderSeg(el, text, k);
        el.dataset.shown = text;
        el.classList.toggle("edited", text !== s.text);
        paintMarks(k);
      }
    });
  }

  function paintMarks(k) {  // decision classes on phrase marks re-created by renderSeg
    const sec = sections[k], p = D.patches[k], r = rec(k);
    for (const el of sec.querySelectorAll(".ph")) {
      const d = r && r.phrases.get(p.phrases[+el.dataset.i].tag);
      el.classList.remove("d-accept", "d-reject", "d-edit");
      if (d) el.classList.add("d-" + d.decision);
    }
  }

  function updateLeft() {
    let patches = 0, phrases = 0;
    D.patches.forEach((p, k) => {
      const r = rec(k);
      if (!r || !r.decision) patches++;
      if (r && r.decision === "reject") return;
      phrases += p.phrases.filter((ph) => !(r && r.phrases.has(ph.tag))).length;
    });
    left.dataset.patches = String(patches);
    left.dataset.phrases = String(phrases);
    say(left, patches + " of " + D.patches.length + " patches and " + phrases + " phrases left");
  }

  function commit(k) { paint(k); updateLeft(); save(); }

  // ---- decisions ------------------------------------------------------------------------------------
  function decidePhrase(k, i, decision, text) {
    const r = rec(k, true), tag = D.patches[k].phrases[i].tag;
    r.phrases.set(tag, decision === "edit" ? { decision, text, at: now() } : { decision, at: now() });
    commit(k);
  }

  function clearPhrase(k, i) {
    const r = rec(k);
    if (r) { r.phrases.delete(D.patches[k].phrases[i].tag); commit(k); }
  }

  function decidePatch(k, decision) {
    const r = rec(k, true), at = now();
    r.decision = decision;
    r.at = at;
    const note = sections[k].querySelector("input.note");
    if (note) r.note = note.value.slice(0, 2000);
    if (decision === "accept")  // accepting a patch accepts the phrases not decided yet
      for (const ph of D.patches[k].phrases) if (!r.phrases.has(ph.tag)) r.phrases.set(ph.tag, { decision: "accept", at });
    commit(k);
  }

  function clearPatch(k) {
    const r = rec(k);
    if (r) { r.decision = null; r.at = null; commit(k); }
  }

  // ---- editing --------------------------------------------------------------------------------------
  const rowOf = (k, i) => sections[k].querySelector('.prow[data-i="' + i + '"]');

  function openEditor(k, i) {
    if (!D.patches[k].phrases.length) return;
    const row = rowOf(k, i), ed = row.querySelector(".editor"), ta = ed.querySelector("textarea");
    ta.value = segText(k, D.patches[k].phrases[i].seg);
    say(ed.querySelector(".err"), "");
    ed.hidden = false;
    ta.focus();
  }

  function closeEditor(k, i) {
    const row = rowOf(k, i);
    row.querySelector(".editor").hidden = true;
    row.focus();
  }

  function saveEditor(k, i) {
    const row = rowOf(k, i), ed = row.querySelector(".editor");
    const text = norm(ed.querySelector("textarea").value);
    const why = checkEdit(text, k, i);
    if (why) { say(ed.querySelector(".err"), why); return; }
    const p = D.patches[k];
    if (text === norm(p.segs[p.phrases[i].seg].text)) decidePhrase(k, i, "accept");  // unchanged: an accept
    else decidePhrase(k, i, "edit", text);
    closeEditor(k, i);
  }

  // ---- focus, highlight, navigation ------------------------------------------------------------------
  function highlight(sec, i) {
    for (const el of sec.querySelectorAll(".hl")) el.classList.remove("hl");
    const fig = sec.querySelector("svg.fig");
    if (i < 0) { if (fig) fig.classList.remove("hot"); return; }
    if (fig) fig.classList.add("hot");
    for (const el of sec.querySelectorAll('[data-i="' + i + '"]')) el.classList.add("hl");
  }

  function go(k) {
    if (!sections.length) return;
    cur = Math.max(0, Math.min(sections.length - 1, k));
    curPh = -1;
    sections[cur].focus();
    sections[cur].scrollIntoView({ block: "start" });
  }

  function phrase(k, i) {
    const n = D.patches[k].phrases.length;
    if (!n) return;
    curPh = Math.max(0, Math.min(n - 1, i));
    rowOf(k, curPh).focus();
  }

  function nextPhrase(k, i) {
    const p = D.patches[k], r = rec(k);
    for (let j = i + 1; j < p.phrases.length; j++) if (!(r && r.phrases.has(p.phrases[j].tag))) return j;
    return Math.min(i + 1, p.phrases.length - 1);
  }

  function nextUndecided(k) {
    for (let s = 1; s <= sections.length; s++) {
      const j = (k + s) % sections.length, r = rec(j);
      if (!r || !r.decision) { go(j); return; }
    }
    say(saved, "every patch of this sheet is decided: download the decisions (d)");
  }

  function where(el) {
    const sec = el.closest && el.closest("section.patch");
    if (!sec) return null;
    const hit = el.closest("[data-i]");
    return { k: +sec.dataset.k, sec, i: hit ? +hit.dataset.i : -1 };
  }

  document.addEventListener("focusin", (e) => {
    const w = where(e.target);
    if (!w) return;
    cur = w.k;
    if (e.target.matches("section.patch")) curPh = -1;
    else if (w.i >= 0) curPh = w.i;
    highlight(w.sec, w.i >= 0 ? w.i : -1);
  });
  document.addEventListener("mouseover", (e) => {
    const w = where(e.target);
    if (w && w.i >= 0) highlight(w.sec, w.i);
  });
  document.addEventListener("mouseout", (e) => {
    const w = where(e.target);
    if (!w || w.i < 0) return;
    const to = e.relatedTarget && where(e.relatedTarget);
    if (to && to.sec === w.sec && to.i === w.i) return;
    const f = where(document.activeElement);
    highlight(w.sec, f && f.sec === w.sec ? f.i : -1);
  });

  // ---- mouse ----------------------------------------------------------------------------------------
  function toggle(what) {
    const off = document.body.classList.toggle("no-" + what);
    document.querySelector('header button[data-act="' + what + '"]').setAttribute("aria-pressed", String(!off));
  }

  function curatorName() { return curatorInput.value.trim().slice(0, 100); }

  function payload() {
    const patches = [];
    D.patches.forEach((p, k) => {
      const r = rec(k);
      if (!r) return;
      const phrases = p.phrases.filter((ph) => r.phrases.has(ph.tag)).map((ph) => {
        const d = r.phrases.get(ph.tag), o = { tag: ph.tag, decision: d.decision, at: d.at };
        if (d.decision === "edit") o.text = d.text;
        return o;
      });
      if (!r.decision && !phrases.length) return;
      patches.push({ patch_id: p.id, content_sha256: p.hash, decision: r.decision, note: r.decision ? r.note : "",
        at: r.decision ? r.at : null, phrases });
    });
    return { format: "geopixeld-curation-decisions", version: 1, export_id: D.export_id, sheet_id: D.sheet_id,
      sheet_file: D.sheet_file, split: D.split, curator: curatorName(), saved_at: now(), generator: D.generator, patches };
  }

  function download() {
    if (!curatorName()) {
      say(warn, "Enter your name as curator before downloading.");
      curatorInput.focus();
      return;
    }
    say(warn, "");
    const blob = new Blob([JSON.stringify(payload(), null, 1)], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = D.sheet_id + ".decisions.json";
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 2000);
    say(saved, "downloaded " + a.download);
  }

  document.addEventListener("click", (e) => {
    const b = e.target.closest && e.target.closest("button[data-act]");
    if (!b) return;
    const act = b.dataset.act, w = where(b);
    if (act === "marks" || act === "grid") return toggle(act);
    if (act === "download") return download();
    if (act === "help") { help.hidden = !help.hidden; return; }
    if (!w) return;
    const { k, i } = w;
    if (act === "accept" || act === "reject") decidePhrase(k, i, act);
    else if (act === "edit") openEditor(k, i);
    else if (act === "undo") clearPhrase(k, i);
    else if (act === "save") saveEditor(k, i);
    else if (act === "cancel") closeEditor(k, i);
    else if (act === "paccept") decidePatch(k, "accept");
    else if (act === "preject") decidePatch(k, "reject");
    else if (act === "pflag") decidePatch(k, "flag");
    else if (act === "pundo") clearPatch(k);
  });

  document.addEventListener("change", (e) => {
    if (e.target === curatorInput) {
      try { localStorage.setItem(CURATOR_KEY, curatorName()); } catch (err) { /* storage off: warned at start */ }
      save();
    } else if (e.target.matches("input.note")) {
      const w = where(e.target), r = rec(w.k, true);
      r.note = e.target.value.slice(0, 2000);
      commit(w.k);
    }
  });

  // ---- keyboard -------------------------------------------------------------------------------------
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t.matches && t.matches("textarea")) {
      const w = where(t);
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); saveEditor(w.k, w.i); }
      else if (e.key === "Escape") { e.preventDefault(); closeEditor(w.k, w.i); }
      return;
    }
    if (t.matches && t.matches("input")) {
      if (t.matches("input.note") && e.key === "Enter") {
        e.preventDefault();
        const w = where(t);
        decidePatch(w.k, "flag");
        nextUndecided(w.k);
      } else if (e.key === "Escape") { e.preventDefault(); t.blur(); if (where(t)) sections[where(t).k].focus(); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const k = cur, i = curPh;
    switch (e.key) {
      case "j": case "ArrowDown": go(k + 1); break;
      case "k": case "ArrowUp": go(k - 1); break;
      case "l": case "ArrowRight": phrase(k, i + 1); break;
      case "h": case "ArrowLeft": phrase(k, i - 1); break;
      case "a": case "r":
        if (i < 0) { phrase(k, 0); break; }
        decidePhrase(k, i, e.key === "a" ? "accept" : "reject");
        phrase(k, nextPhrase(k, i));
        break;
      case "e": if (i >= 0) openEditor(k, i); else phrase(k, 0); break;
      case "u": if (i >= 0) clearPhrase(k, i); break;
      case "A": decidePatch(k, "accept"); nextUndecided(k); break;
      case "R": decidePatch(k, "reject"); nextUndecided(k); break;
      case "F": { const n = sections[k].querySelector("input.note"); if (n) n.focus(); break; }
      case "U": clearPatch(k); break;
      case "n": nextUndecided(k); break;
      case "m": toggle("marks"); break;
      case "g": toggle("grid"); break;
      case "d": download(); break;
      case "?": help.hidden = !help.hidden; break;
      case "Escape": help.hidden = true; break;
      default: return;
    }
    e.preventDefault();
  });

  // ---- start ----------------------------------------------------------------------------------------
  try { curatorInput.value = localStorage.getItem(CURATOR_KEY) || ""; } catch (e) { /* warned in restore */ }
  restore();
  sections.forEach((_, k) => paint(k));
  updateLeft();
  document.body.dataset.ready = "1";
  performance.mark("sheet-ready");
})();

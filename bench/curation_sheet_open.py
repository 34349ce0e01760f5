"""Benchmark: open a curation sheet of 50 patches in headless Chromium (issue 5 goal: under 2 seconds).

Drafts the small synthetic demo split (template drafter, made once under --data), exports a sheet of 50 patches
and, as the baseline in the same process, a sheet of 1 patch; then opens each from its file:// URL in a fresh
tab, several times, and prints a table: the wall time from navigation until the page has loaded, the sheet's
script has run and two frames were drawn (what a curator waits for), the same measured inside the page, and
the time until every patch is laid out. The first open of each sheet is a warm-up and is not counted.

    python bench/curation_sheet_open.py [--data bench/out/curation] [--runs 7] [--patches 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from pipeline.curation import ExportFilter, SheetSettings, export_sheets
from pipeline.curation.browser import launch
from pipeline.contracts.shards import read_manifest

TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
LAY_OUT_ALL = ("() => { for (const s of document.querySelectorAll('section.patch')) s.style.contentVisibility = 'visible';"
               " return document.body.getBoundingClientRect().height; }")


def drafted(data: Path) -> Path:
    out = data / "out"
    m = read_manifest(out / "val" / "records")
    if m and m.get("complete"):
        return out
    from pipeline.synthetic.tiny_build import tiny_build

    print(f"making the small synthetic val split in {data} (once) ...", flush=True)
    return tiny_build(data, scale="small", splits=("val",), source=data / "src")


def open_once(browser, sheet: Path) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None)
    t0 = time.perf_counter()
    page.goto(sheet.as_uri(), wait_until="load")
    page.wait_for_selector("body[data-ready='1']", state="attached")
    page.evaluate(TWO_FRAMES)
    wall = time.perf_counter() - t0
    ready = page.evaluate("performance.getEntriesByName('sheet-ready')[0].startTime") / 1000
    t1 = time.perf_counter()
    page.evaluate(LAY_OUT_ALL)
    page.evaluate(TWO_FRAMES)
    all_laid = wall + time.perf_counter() - t1
    page.close()
    return {"wall": wall, "ready": ready, "all": all_laid, "outside": len(outside)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("bench/out/curation"))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--patches", type=int, default=50)
    args = ap.parse_args()
    out = drafted(args.data)
    sheets = {}
    for n in (1, args.patches):
        t = time.perf_counter()
        res = export_sheets(out, "val", ExportFilter(undecided=False, limit=n), SheetSettings(per_sheet=n))
        if res.patches < n:
            raise SystemExit(f"only {res.patches} patches drafted in {out}; need {n}")
        sheets[n] = (res.sheets[0], time.perf_counter() - t)
    with sync_playwright() as p:
        browser = launch(p)
        results = {}
        for n, (sheet, _) in sheets.items():
            open_once(browser, sheet)  # warm-up: Chromium's first tab, disk cache
            results[n] = [open_once(browser, sheet) for _ in range(args.runs)]
        version = browser.version
        browser.close()
    base = statistics.median(r["wall"] for r in results[1])
    print(f"\nCuration sheet open + render, headless Chromium {version}, {args.runs} runs each after a warm-up "
          f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)\n")
    print("| sheet | patches | size (MB) | export (s) | open + render, median (s) | min | max | in page, median (s) "
          "| all patches laid out, median (s) | vs 1 patch | requests off file |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, rs in results.items():
        sheet, export_s = sheets[n]
        walls = [r["wall"] for r in rs]
        med = statistics.median(walls)
        print(f"| {sheet.parent.name}/{sheet.name} | {n} | {sheet.stat().st_size / 1e6:.2f} | {export_s:.2f} | {med:.3f} | "
              f"{min(walls):.3f} | {max(walls):.3f} | {statistics.median(r['ready'] for r in rs):.3f} | "
              f"{statistics.median(r['all'] for r in rs):.3f} | {med / base:.2f}x | {sum(r['outside'] for r in rs)} |")
    med = statistics.median(r["wall"] for r in results[args.patches])
    verdict = "met" if med < 2 else "NOT met"
    print(f"\nGoal: a sheet of {args.patches} patches opens and renders in under 2 s: {verdict} (median {med:.3f} s).")


if __name__ == "__main__":
    main()

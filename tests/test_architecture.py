"""The import graph follows docs/architecture.md: no cycle between modules, and every import runs one way.

Layers, lowest first; a module may import its own layer and the ones below, never above:
    prompts < pipeline.contracts < annotations < pipeline.driver < ingest < planning < drafting < verification
    < curation < release < synthetic < flows < pipeline.cli
and model/ imports nothing of the project but prompts and pipeline.contracts (only pipeline.cli imports model/).
Imports inside functions count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "annotations", "flows", "prompts", "model")
LAYERS = ["prompts", "pipeline.contracts", "annotations", "pipeline.driver", "pipeline.ingest", "pipeline.planning",
          "pipeline.drafting", "pipeline.verification", "pipeline.curation", "pipeline.release", "pipeline.synthetic",
          "flows", "pipeline.cli"]
MODEL_MAY_IMPORT = ("model", "pipeline.contracts", "prompts")


def project_modules(root: Path = REPO) -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (root / pkg).rglob("*.py"):
            parts = list(p.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = p
    return mods


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (relative imports resolved; `from pkg import mod` -> pkg.mod)."""
    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                m = owner(t)
                if m and m != name:
                    deps.add(m)
        graph[name] = deps
    return graph


def layer(module: str) -> int | None:
    if module == "pipeline":  # the package itself holds only __version__
        return LAYERS.index("pipeline.contracts")
    best = None
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(LAYERS[best]):
                best = i
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if mod.split(".")[0] == "model":
                if not any(dep == p or dep.startswith(p + ".") for p in MODEL_MAY_IMPORT):
                    bad.append(f"{mod} -> {dep} (model/ imports only {', '.join(MODEL_MAY_IMPORT)})")
                continue
            if dep.split(".")[0] == "model":
                if layer(mod) != layer("pipeline.cli"):
                    bad.append(f"{mod} -> {dep} (only pipeline.cli imports model/)")
                continue
            lm, ld = layer(mod), layer(dep)
            if lm is None or ld is None:
                bad.append(f"{mod} -> {dep} (a module outside the layers of docs/architecture.md)")
            elif ld > lm:
                bad.append(f"{mod} -> {dep} ({LAYERS[lm]} may not import {LAYERS[ld]})")
    return bad


@pytest.fixture(scope="module")
def graph():
    return import_graph(project_modules())


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_imports_run_one_way(graph):
    assert wrong_way(graph) == []


def test_every_module_has_a_layer(graph):
    assert [m for m in graph if m.split(".")[0] != "model" and layer(m) is None] == []


def test_the_architecture_page_names_every_module():
    """docs/architecture.md matches the tree: each package's row names each of its modules (and sub-folders)."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines() if line.startswith("| `")}
    missing = []
    for folder, row in rows.items():
        path = REPO / folder
        if folder.endswith(".py") or not path.is_dir():
            missing += [] if path.is_file() else [f"{folder} (no such file)"]
            continue
        names = [p.name for p in path.glob("*.py") if p.name != "__init__.py"]
        names += [f"{p.name}/" for p in path.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                  and f"{folder}{p.name}/" not in rows]
        missing += [f"{folder}{n}" for n in names if f"`{n}`" not in row]
    assert missing == []
    top = {f"{pkg}/" for pkg in PACKAGES if pkg != "pipeline"} | {"pipeline/driver.py", "pipeline/cli.py"}
    top |= {f"pipeline/{p.name}/" for p in (REPO / "pipeline").iterdir() if (p / "__init__.py").exists()}
    assert sorted(top - set(rows)) == []


def test_the_checks_catch_a_cycle_and_a_wrong_way_import(tmp_path):
    """The checker itself: a planted cycle and a contracts -> planning import are both found."""
    for rel, text in {"pipeline/__init__.py": "", "pipeline/contracts/__init__.py": "",
                      "pipeline/contracts/a.py": "from pipeline.planning import b\n",
                      "pipeline/planning/__init__.py": "", "pipeline/planning/b.py": "from ..contracts import a\n",
                      "model/__init__.py": "", "model/m.py": "import flows.x\n", "flows/__init__.py": "",
                      "flows/x.py": "", "annotations/__init__.py": "", "prompts/__init__.py": ""}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    g = import_graph(project_modules(tmp_path))
    assert cycles(g) == [["pipeline.contracts.a", "pipeline.planning.b"]]
    bad = wrong_way(g)
    assert any(b.startswith("pipeline.contracts.a -> pipeline.planning.b") for b in bad)
    assert any(b.startswith("model.m -> flows.x") for b in bad)

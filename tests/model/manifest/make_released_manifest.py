"""Write the parameter manifest (name -> shape) that the *released* GeoPixel code declares, from its own source.

Run once by hand (not in CI); the JSON it writes is checked in and `test_manifest.py` compares our full-size model
against it:

    .venv/bin/python tests/model/manifest/make_released_manifest.py /path/to/GeoPixel  tests/model/manifest/

`/path/to/GeoPixel` is a checkout of github.com/mbzuai-oryx/GeoPixel (or the bare git mirror the `fetch` tool
leaves; the script then extracts `model/` from its HEAD). Nothing is downloaded and no weights exist here: the
released classes are instantiated on torch's meta device (SAM2, 224M values, on the CPU), with three substitutions that only skip downloads —
the CLIP tower is built from its config instead of `from_pretrained`, SAM2 is built from the released
`sam2_hiera_l.yaml` by a ten-line instantiate instead of hydra + `hf_hub_download`, and the font download in
InternLM-XComposer's constructor is skipped. Import-only dependencies that are not installed here (einops,
torchvision, PIL, decord, matplotlib, hydra, omegaconf, sentencepiece) are replaced by empty stand-in modules; none
of them is called while a model is constructed.

Two manifests are written: `geopixel7b.json` (GeoPixelForCausalLM after `resize_token_embeddings` with the three
added tokens, i.e. what `merge_lora_weights_and_save_hf_model.py` saves as GeoPixel-7B) and `ixc2d5_7b.json`
(InternLMXComposer2ForCausalLM, the base model GeoPixel starts from). The InternLM2 dimensions are those of
InternLM-XComposer-2.5-7B's config.json (hidden 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336,
vocab 92544, no attention bias); the CLIP tower is ViT-L/14 at 560 px (internlm/internlm-xcomposer2d5-clip).
CLIP names are written in the transformers-4 layout (`vit.vision_tower.vision_model.*`) that the released code
(transformers 4.33.2) saved; see `shapes`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import json
import subprocess
import sys
import tarfile
import io
import tempfile
import types
from pathlib import Path

STUBBED = ("einops", "torchvision", "PIL", "decord", "matplotlib", "hydra", "omegaconf", "sentencepiece")

IXC_CONFIG = dict(vocab_size=92544, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, bias=False, rope_theta=1000000,
                  max_position_embeddings=24576, rms_norm_eps=1e-5, attn_implementation="eager",
                  max_length=16384)
CLIP_CONFIG = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   image_size=560, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
ADDED_TOKENS = ["[SEG]", "<p>", "</p>"]
CLIP_PREFIX = "vit.vision_tower."


class _Anything(types.ModuleType):
    """A stand-in module: every attribute is another stand-in (classes, functions, submodules alike)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(f"{self.__name__}.{name}")

    def __call__(self, *a, **k):
        return _Anything(f"{self.__name__}()")

    def __mro_entries__(self, bases):
        return (object,)


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in STUBBED:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _Anything(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        pass


def _source_root(arg: Path) -> Path:
    """A work tree as given, or `model/` extracted from HEAD of a bare mirror."""
    if (arg / "model" / "geopixel.py").exists():
        return arg
    tmp = Path(tempfile.mkdtemp(prefix="geopixel-src-"))
    data = subprocess.run(["git", "-C", str(arg), "archive", "HEAD", "model"], check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(data)).extractall(tmp)
    return tmp


def _commit(arg: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(arg), "rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _instantiate(node):
    """hydra-style `_target_` instantiation of the released SAM2 yaml (recursive, no interpolation needed)."""
    if isinstance(node, dict):
        kwargs = {k: _instantiate(v) for k, v in node.items() if k != "_target_"}
        if "_target_" not in node:
            return kwargs
        module, _, name = node["_target_"].rpartition(".")
        return getattr(importlib.import_module(module), name)(**kwargs)
    if isinstance(node, list):
        return [_instantiate(v) for v in node]
    if isinstance(node, str):  # PyYAML reads `1e-6` as text where OmegaConf reads a float
        try:
            return float(node)
        except ValueError:
            return node
    return node


def shapes(module) -> dict[str, list[int]]:
    """State-dict names and shapes, CLIP names in the transformers-4 layout the checkpoints were saved with.

    The released code pins transformers 4.33.2, whose CLIPVisionModel keeps its modules under `vision_model.`;
    transformers 5 (installed here) dropped that prefix and renames old checkpoints on load. The checkpoints on
    disk carry the old names, so they are restored here.
    """
    out = {}
    for k, v in module.state_dict().items():
        if k.startswith(CLIP_PREFIX) and not k.startswith(CLIP_PREFIX + "vision_model."):
            k = CLIP_PREFIX + "vision_model." + k[len(CLIP_PREFIX):]
        out[k] = list(v.shape)
    return out


def main(src_arg: str, out_dir: str) -> None:
    import torch
    import yaml
    from transformers import CLIPVisionConfig, CLIPVisionModel

    src = _source_root(Path(src_arg))
    sys.meta_path.insert(0, _StubFinder())
    sys.path.insert(0, str(src))
    build_mlp = importlib.import_module("model.IXC.build_mlp")
    xc = importlib.import_module("model.IXC.modeling_internlm_xcomposer2")
    cfg_mod = importlib.import_module("model.IXC.configuration_internlm_xcomposer2")
    geopixel = importlib.import_module("model.geopixel")

    class _ClipFromConfig(CLIPVisionModel):
        @classmethod
        def from_pretrained(cls, *a, **k):  # the released tower calls from_pretrained; build the same shape
            return CLIPVisionModel(CLIPVisionConfig(**CLIP_CONFIG))

    build_mlp.CLIPVisionModel = _ClipFromConfig
    xc.get_font = lambda: None
    sam_yaml = yaml.safe_load((src / "model" / "sam2_configs" / "sam2_hiera_l.yaml").read_text())

    def build_sam2(*_a, **_k):  # on the CPU: Hiera's constructor calls .item(), which meta tensors refuse
        with torch.device("cpu"):
            return _instantiate(sam_yaml["model"])

    geopixel.build_sam2_hf = build_sam2
    geopixel.SAM2Transforms = lambda **_k: None

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    provenance = {"repository": "github.com/mbzuai-oryx/GeoPixel", "commit": _commit(Path(src_arg)),
                  "internlm2_config": IXC_CONFIG, "clip_config": CLIP_CONFIG,
                  "sam2_config": "model/sam2_configs/sam2_hiera_l.yaml",
                  "generator": "tests/model/manifest/make_released_manifest.py"}

    def config(**kw):
        cfg = cfg_mod.InternLMXcomposer2Config(**{**IXC_CONFIG, **kw})
        cfg.max_length = IXC_CONFIG["max_length"]  # transformers 5 no longer keeps unknown kwargs as attributes
        cfg.rope_scaling = None  # transformers 5 fills in a rope dict the 2024 code cannot read; rope has no weights
        return cfg

    with torch.device("meta"):
        base = xc.InternLMXComposer2ForCausalLM(config())
    ixc = shapes(base)
    del base
    _write(out / "ixc2d5_7b.json", "InternLM-XComposer-2.5-7B (InternLMXComposer2ForCausalLM)", provenance, ixc)

    gp_cfg = config(vocab_size=IXC_CONFIG["vocab_size"] + len(ADDED_TOKENS))
    with torch.device("meta"):
        model = geopixel.GeoPixelForCausalLM(gp_cfg, seg_token_idx=IXC_CONFIG["vocab_size"], vision_pretrained="x",
                                             train_mask_decoder=True, out_dim=256, ce_loss_weight=1.0,
                                             dice_loss_weight=0.5, bce_loss_weight=2.0)
    gp = shapes(model)
    _write(out / "geopixel7b.json", "GeoPixel-7B (GeoPixelForCausalLM, vocabulary 92544 + [SEG] <p> </p>)",
           provenance, gp)
    print(f"InternLM-XComposer-2.5-7B: {len(ixc)} tensors, {sum(_n(s) for s in ixc.values()) / 1e9:.2f}B values")
    print(f"GeoPixel-7B: {len(gp)} tensors, {sum(_n(s) for s in gp.values()) / 1e9:.2f}B values")


def _write(path: Path, model: str, provenance: dict, params: dict) -> None:
    """JSON with one parameter a line, so that a regenerated manifest diffs readably."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(params.items())]
    head = json.dumps({"model": model, "provenance": provenance})[:-1]
    path.write_text(head + ', "parameters": {\n' + ",\n".join(lines) + "\n}}\n")


def _n(shape):
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Build a tiny random-weight vision-language model and its tokenizer offline, for a real `vllm serve`.

Two families, as annotators are picked from both (shared/GEOPIXELD.md, "Serving an annotator today"):
- `qwen2-vl` (the default, about 360k parameters): Qwen2-VL, a byte-level BPE, ChatML turns, the image as
  `<|vision_start|><|image_pad|><|vision_end|>` expanded to a variable number of patch tokens;
- `gemma3` (about 220k parameters): Gemma 3 (`Gemma3ForConditionalGeneration`, SigLIP tower), a SentencePiece-style
  BPE with byte fallback and `▁` for spaces (another vocabulary type for the structured-output grammar),
  Gemma's turns (`<start_of_turn>user` ... `<start_of_turn>model`, a system message folded into the first user
  turn, `<bos>` first), and the image as `<start_of_image>` replaced by the server with
  `\\n\\n<start_of_image>` + a fixed number of `<image_soft_token>`s + `<end_of_image>\\n\\n`.

Run with the vLLM environment's Python (it has torch, transformers and tokenizers):
    .venv-vllm/bin/python pipeline/synthetic/tiny_vlm.py OUT_DIR [--family gemma3]
Nothing is downloaded: the tokenizers are trained here on a small built-in corpus. Shapes follow
shared/recipes/vllm-cpu.md (vLLM's CPU attention needs head_dim 32 or another of its supported sizes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FAMILIES = ("qwen2-vl", "gemma3")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' or part['type'] == 'image_url' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The image is an aerial view of a harbor with ships, storage tanks and small vehicles.",
    "The tennis court at the top left has a green surface and white lines.",
    '{"description": "a plane on the apron", "mark": 1, "sentence": "The plane is white."}',
    "<p> small vehicles-1 </p> [SEG] parked in rows near the bridge and the roundabout.",
] * 20

# Gemma 3: its special tokens (the ids differ from the release's, the strings and roles are the same), the
# newline runs its tokenizer holds as single tokens (vLLM's Gemma 3 processor looks them up by text), and the
# logic of its released chat template.
GEMMA_SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                 "<end_of_image>", "<image_soft_token>"]
GEMMA_NEWLINES = ["\n", "\n\n", "\n\n\n", "\n\n\n\n"]
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}"
    "{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}"
    "{%- else -%}{{ raise_exception('Invalid content type') }}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
GEMMA_IMAGE_SIZE = 112  # SigLIP input (the release: 896); 8 x 8 patches of 14 px, pooled 2 x 2
GEMMA_IMAGE_TOKENS = 16  # mm_tokens_per_image (the release: 256)


def build(out: Path, family: str = "qwen2-vl") -> None:
    """Write the model folder (config, safetensors, tokenizer, processor, generation config) to `out`."""
    if family == "qwen2-vl":
        _build_qwen2_vl(Path(out))
    elif family == "gemma3":
        _build_gemma3(Path(out))
    else:
        raise ValueError(f"unknown tiny model family {family!r}: one of {', '.join(FAMILIES)}")


def _build_qwen2_vl(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, model_max_length=2048)
    fast.chat_template = CHAT_TEMPLATE
    ids = {t: tok.token_to_id(t) for t in SPECIAL}
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=2048,
                         rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]}, tie_word_embeddings=True,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"]),
        vision_config=dict(depth=2, embed_dim=64, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_chans=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(cfg).to(torch.float32)
    model.save_pretrained(out)
    proc = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112),
                            video_processor=Qwen2VLVideoProcessor(), tokenizer=fast, chat_template=CHAT_TEMPLATE)
    proc.save_pretrained(out)
    gen = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]}
    (out / "generation_config.json").write_text(json.dumps(gen))
    print(f"tiny Qwen2-VL: {sum(p.numel() for p in model.parameters())} parameters -> {out}")


def gemma_tokenizer():
    """A Gemma-style fast tokenizer: BPE over `▁`-joined text with byte fallback (any text encodes), trained here."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.normalizer = normalizers.Replace(" ", "▁")
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=GEMMA_SPECIAL, show_progress=False)
    trained.train_from_iterator(CORPUS + ["user\nmodel\n"], trainer)
    spec = json.loads(trained.to_str())["model"]
    vocab = dict(spec["vocab"])
    for b in range(256):  # byte-fallback pieces, as SentencePiece keeps them
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in GEMMA_SPECIAL])
    tok.add_tokens([AddedToken(n, normalized=False, special=False) for n in GEMMA_NEWLINES])
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                       special_tokens=[("<bos>", bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                              "image_token": "<image_soft_token>", "sot_token": "<start_of_turn>",
                              "eot_token": "<end_of_turn>"},
        model_max_length=2048, clean_up_tokenization_spaces=False)
    fast.chat_template = GEMMA_CHAT_TEMPLATE
    return fast


def _build_gemma3(out: Path) -> None:
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    out.mkdir(parents=True, exist_ok=True)
    fast = gemma_tokenizer()
    ids = {t: fast.convert_tokens_to_ids(t) for t in GEMMA_SPECIAL}
    cfg = Gemma3Config(
        text_config=dict(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                         sliding_window=256, layer_types=["sliding_attention", "full_attention"],
                         max_position_embeddings=2048, tie_word_embeddings=True, pad_token_id=ids["<pad>"],
                         bos_token_id=ids["<bos>"], eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]]),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=GEMMA_IMAGE_SIZE, patch_size=14, vision_use_head=False),
        mm_tokens_per_image=GEMMA_IMAGE_TOKENS, boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"], image_token_index=ids["<image_soft_token>"],
        bos_token_id=ids["<bos>"], eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]], pad_token_id=ids["<pad>"],
        tie_word_embeddings=True, torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(cfg).to(torch.float32)
    with torch.no_grad():  # transformers starts the image projection at zero: random, so the image reaches the text
        proj = model.model.multi_modal_projector.mm_input_projection_weight
        proj.normal_(0.0, 0.5)
    model.save_pretrained(out)
    _released_gemma3_names(out / "model.safetensors")
    image_proc = Gemma3ImageProcessor(size={"height": GEMMA_IMAGE_SIZE, "width": GEMMA_IMAGE_SIZE},
                                      image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_pan_and_scan=False)
    proc = Gemma3Processor(image_processor=image_proc, tokenizer=fast, chat_template=GEMMA_CHAT_TEMPLATE,
                           image_seq_length=GEMMA_IMAGE_TOKENS)
    proc.save_pretrained(out)
    gen = {"bos_token_id": ids["<bos>"], "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
           "pad_token_id": ids["<pad>"]}
    (out / "generation_config.json").write_text(json.dumps(gen))
    print(f"tiny Gemma 3: {sum(p.numel() for p in model.parameters())} parameters -> {out}")


def _released_gemma3_names(path: Path) -> None:
    """The tensor names of the released Gemma 3 checkpoints (`vision_tower.vision_model.*`), which vLLM loads;
    transformers 5 saves the SigLIP tower one level flatter (`vision_tower.encoder.*`)."""
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    renamed = {("vision_tower.vision_model." + k[len("vision_tower."):]
                if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model.") else k): v
               for k, v in state.items()}
    save_file(renamed, path, metadata={"format": "pt"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--family", choices=FAMILIES, default="qwen2-vl")
    args = ap.parse_args()
    build(args.out, args.family)

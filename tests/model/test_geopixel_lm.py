"""The InternLM2 decoder: equal to transformers' Llama once `wqkv` is unpacked, PLoRA touches image tokens only,
KV-cached decoding equals a full pass, and right padding does not leak into a sample."""

from __future__ import annotations

import pytest
import torch

from model.config import LMConfig
from model.internlm2 import DecoderLayer, KVCache, PLoRALinear, RMSNorm, init_lm_weights, run_decoder

pytestmark = pytest.mark.usefixtures("gp_one_thread")

CFG = LMConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=2,
               max_position_embeddings=512, rope_theta=10000.0, plora_rank=4, plora_alpha=8.0, plora_dropout=0.0,
               mode_loras=False)


@pytest.fixture(scope="module")
def stack():
    torch.manual_seed(0)
    layers = torch.nn.ModuleList(DecoderLayer(CFG) for _ in range(CFG.num_layers))
    init_lm_weights(layers)
    norm = RMSNorm(CFG.hidden_size, CFG.rms_norm_eps)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        for m in layers.modules():
            if isinstance(m, PLoRALinear):
                m.Plora_B.weight.normal_(0, 0.1)  # a live image-token branch
    return layers.eval(), norm


def test_matches_transformers_llama_with_unpacked_wqkv(stack):
    from transformers import LlamaConfig, LlamaModel

    layers, norm = stack
    d, g, kv = CFG.head_dim, CFG.num_heads // CFG.num_kv_heads, CFG.num_kv_heads
    llama = LlamaModel(LlamaConfig(vocab_size=CFG.vocab_size, hidden_size=CFG.hidden_size,
                                   intermediate_size=CFG.intermediate_size, num_hidden_layers=CFG.num_layers,
                                   num_attention_heads=CFG.num_heads, num_key_value_heads=kv,
                                   rms_norm_eps=CFG.rms_norm_eps, rope_theta=CFG.rope_theta,
                                   max_position_embeddings=CFG.max_position_embeddings, attention_bias=False,
                                   attn_implementation="eager")).eval()
    with torch.no_grad():
        for ours, theirs in zip(layers, llama.layers):
            w = ours.attention.wqkv.weight.view(kv, g + 2, d, CFG.hidden_size)
            theirs.self_attn.q_proj.weight.copy_(w[:, :g].reshape(-1, CFG.hidden_size))
            theirs.self_attn.k_proj.weight.copy_(w[:, g].reshape(-1, CFG.hidden_size))
            theirs.self_attn.v_proj.weight.copy_(w[:, g + 1].reshape(-1, CFG.hidden_size))
            theirs.self_attn.o_proj.weight.copy_(ours.attention.wo.weight)
            theirs.mlp.gate_proj.weight.copy_(ours.feed_forward.w1.weight)
            theirs.mlp.up_proj.weight.copy_(ours.feed_forward.w3.weight)
            theirs.mlp.down_proj.weight.copy_(ours.feed_forward.w2.weight)
            theirs.input_layernorm.weight.copy_(ours.attention_norm.weight)
            theirs.post_attention_layernorm.weight.copy_(ours.ffn_norm.weight)
        llama.norm.weight.copy_(norm.weight)
        x = torch.randn(2, 11, CFG.hidden_size)
        ref = llama(inputs_embeds=x).last_hidden_state
        got = run_decoder(layers, norm, CFG, x, im_mask=None)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-4)


def test_plora_branch_changes_image_tokens_only():
    torch.manual_seed(1)
    lin = PLoRALinear(8, 6, bias=False, rank=2, alpha=4.0, dropout=0.0)
    torch.nn.init.normal_(lin.Plora_B.weight)
    x = torch.randn(1, 5, 8)
    im = torch.tensor([[False, True, True, False, False]])
    plain, mixed = lin(x, None), lin(x, im)
    assert torch.equal(mixed[0, ~im[0]], plain[0, ~im[0]])
    assert not torch.allclose(mixed[0, im[0]], plain[0, im[0]])
    expected = plain[0, im[0]] + lin.Plora_B(lin.Plora_A(x[0, im[0]])) * 2.0
    torch.testing.assert_close(mixed[0, im[0]], expected)


def test_kv_cache_decoding_equals_full_pass(stack):
    layers, norm = stack
    torch.manual_seed(2)
    x = torch.randn(1, 9, CFG.hidden_size)
    im = torch.zeros(1, 9, dtype=torch.bool)
    im[0, 1:5] = True
    with torch.no_grad():
        full = run_decoder(layers, norm, CFG, x, im)
        cache = KVCache(CFG.num_layers)
        first = run_decoder(layers, norm, CFG, x[:, :6], im[:, :6], cache=cache)
        steps = [run_decoder(layers, norm, CFG, x[:, i:i + 1], None, cache=cache) for i in range(6, 9)]
    torch.testing.assert_close(torch.cat([first] + steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_right_padding_does_not_change_a_sample(stack):
    layers, norm = stack
    torch.manual_seed(3)
    a, b = torch.randn(1, 7, CFG.hidden_size), torch.randn(1, 4, CFG.hidden_size)
    batch = torch.cat([a, torch.cat([b, torch.randn(1, 3, CFG.hidden_size)], dim=1)])
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    with torch.no_grad():
        both = run_decoder(layers, norm, CFG, batch, None, attention_mask=mask)
        alone = run_decoder(layers, norm, CFG, b, None)
    torch.testing.assert_close(both[1, :4], alone[0], atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients(stack):
    layers, norm = stack
    torch.manual_seed(4)
    x = torch.randn(1, 6, CFG.hidden_size, requires_grad=True)
    grads = []
    for ckpt in (False, True):
        x.grad = None
        run_decoder(layers, norm, CFG, x, None, gradient_checkpointing=ckpt).square().sum().backward()
        grads.append(x.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])

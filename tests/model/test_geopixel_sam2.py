"""Our SAM2 image path (Hiera + FPN, prompt encoder, mask decoder) against transformers' independent Sam2Model:
the same random weights, mapped by name, must give the same image features and the same mask logits."""

from __future__ import annotations

import re

import pytest
import torch

from model.config import SamConfig

pytestmark = pytest.mark.usefixtures("gp_one_thread")

CFG = SamConfig(image_size=128, embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(4, 4, 2, 2), d_model=32, decoder_heads=2,
                decoder_mlp_dim=64, iou_head_hidden_dim=32, mask_in_chans=8, memory=False)

RULES = [  # our (SAM2 checkpoint) names -> transformers' names
    (r"^image_encoder\.trunk\.patch_embed\.proj\.", "vision_encoder.backbone.patch_embed.projection."),
    (r"^image_encoder\.trunk\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.backbone.blocks.\1.layer_norm\2."),
    (r"^image_encoder\.trunk\.blocks\.(\d+)\.mlp\.layers\.0\.", r"vision_encoder.backbone.blocks.\1.mlp.proj_in."),
    (r"^image_encoder\.trunk\.blocks\.(\d+)\.mlp\.layers\.1\.", r"vision_encoder.backbone.blocks.\1.mlp.proj_out."),
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^sam_prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^sam_prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^sam_prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^sam_mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^sam_mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    (r"(mlps\.\d+|_head)\.layers\.0\.", r"\1.proj_in."),
    (r"(mlps\.\d+|_head)\.layers\.2\.", r"\1.proj_out."),
    (r"(mlps\.\d+|_head)\.layers\.1\.", r"\1.layers.0."),
    (r"\.out_proj\.", ".o_proj."),
    (r"(transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (r"(transformer\.layers\.\d+)\.mlp\.layers\.0\.", r"\1.mlp.proj_in."),
    (r"(transformer\.layers\.\d+)\.mlp\.layers\.1\.", r"\1.mlp.proj_out."),
    (r"transformer\.norm_final_attn\.", "transformer.layer_norm_final_attn."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
]


def to_transformers(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    points = {}
    for name, t in ours.items():
        m = re.match(r"sam_prompt_encoder\.point_embeddings\.(\d)\.weight", name)
        if m:
            points[int(m[1])] = t
            continue
        if name == "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix":
            out["shared_image_embedding.positional_embedding"] = t
            out["prompt_encoder.shared_embedding.positional_embedding"] = t
            continue
        for pat, rep in RULES:
            name = re.sub(pat, rep, name)
        out[name] = t
    out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in sorted(points)])
    return out


@pytest.fixture(scope="module")
def pair():
    from transformers import Sam2Config, Sam2Model

    from model.sam2 import SAM2

    torch.manual_seed(0)
    ours = SAM2(CFG).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.2)  # zero-initialised embeddings must count too
    e, d, s = CFG.embed_dim, CFG.d_model, CFG.image_size
    hf_cfg = Sam2Config(
        vision_config=dict(
            backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=e, num_attention_heads=CFG.num_heads,
                                 image_size=[s, s],
                                 blocks_per_stage=list(CFG.stages), embed_dim_per_stage=[e, 2 * e, 4 * e, 8 * e],
                                 num_attention_heads_per_stage=[1, 2, 4, 8], window_size_per_stage=list(CFG.window_spec),
                                 global_attention_blocks=list(CFG.global_att_blocks),
                                 window_positional_embedding_background_size=list(CFG.window_pos_embed_bkg_spatial_size)),
            backbone_channel_list=CFG.channel_list, backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2],
            fpn_hidden_size=d, fpn_top_down_levels=list(CFG.fpn_top_down_levels)),
        prompt_encoder_config=dict(hidden_size=d, image_size=s, patch_size=16, mask_input_channels=CFG.mask_in_chans),
        mask_decoder_config=dict(hidden_size=d, mlp_dim=CFG.decoder_mlp_dim, num_attention_heads=CFG.decoder_heads,
                                 iou_head_hidden_dim=CFG.iou_head_hidden_dim),
    )
    theirs = Sam2Model(hf_cfg).eval()
    mapped = to_transformers(ours.state_dict())
    expected = theirs.state_dict()
    assert sorted(set(mapped) ^ set(expected)) == []
    assert {k: tuple(v.shape) for k, v in mapped.items() if v.shape != expected[k].shape} == {}
    theirs.load_state_dict(mapped, strict=True)
    return ours, theirs


def test_image_features_match(pair):
    ours, theirs = pair
    torch.manual_seed(1)
    x = torch.randn(2, 3, CFG.image_size, CFG.image_size)
    with torch.no_grad():
        mine = ours.encode(x)
        ref = theirs.get_image_embeddings(x)
    torch.testing.assert_close(mine["image_embed"], ref[-1], atol=1e-4, rtol=1e-4)
    for a, b in zip(mine["high_res"], ref[:2]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("training", [True, False])  # single-mask token / stability fallback (inference)
def test_mask_logits_match(pair, training):
    ours, theirs = pair
    ours.train(training)
    theirs.train(training)
    torch.manual_seed(2)
    x = torch.randn(1, 3, CFG.image_size, CFG.image_size)
    prompts = torch.randn(5, CFG.d_model)
    with torch.no_grad():
        feats = ours.encode(x)
        s = CFG.embedding_size
        low_ours, iou_ours = ours.sam_mask_decoder(feats["image_embed"], ours.sam_prompt_encoder.dense_pe(),
                                                   prompts.unsqueeze(1),
                                                   ours.sam_prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
                                                   .expand(5, -1, s, s), feats["high_res"])
        ref = theirs.get_image_embeddings(x)
        dense = theirs.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, s, s)
        low_ref, iou_ref, *_ = theirs.mask_decoder(
            image_embeddings=ref[-1], image_positional_embeddings=theirs.get_image_wide_positional_embeddings(),
            sparse_prompt_embeddings=prompts.reshape(1, 5, 1, -1), dense_prompt_embeddings=dense,
            multimask_output=False, high_resolution_features=ref[:2])
    ours.eval()
    theirs.eval()
    torch.testing.assert_close(low_ours, low_ref[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(iou_ours, iou_ref[0], atol=1e-4, rtol=1e-4)

"""The ResNet attention pool queried by all its tokens (PLOT's local features, clip/resnet.py).

The reference is written from the definition, one query token and one head at a time: token i's
query (q_proj of token i, split into heads) attends over the keys of all 1 + H*W tokens with a
softmax of the scaled dot products, the heads' weighted values are concatenated and go through
c_proj. Token 0 (the mean of the feature map) is CLIP's usual image feature.
"""

import math

import pytest
import torch

from clip.model import build_model
from tests.tiny_clip import tiny_resnet_state_dict


def reference_all_queries(pool, feature_map):
    """(N, 1 + H*W, output_dim) float64 from pool's weights and feature_map (N, C, H, W)."""
    weights = {name: tensor.detach().double() for name, tensor in pool.state_dict().items()}
    batch, width = feature_map.shape[:2]
    heads, head_width = pool.num_heads, width // pool.num_heads
    outputs = torch.zeros(batch, 1 + feature_map[0, 0].numel(), pool.c_proj.out_features, dtype=torch.float64)
    for n in range(batch):
        positions = feature_map[n].double().flatten(1).T  # (H*W, C), row-major positions
        tokens = torch.cat([positions.mean(0, keepdim=True), positions]) + weights["positional_embedding"]
        keys = tokens @ weights["k_proj.weight"].T + weights["k_proj.bias"]
        values = tokens @ weights["v_proj.weight"].T + weights["v_proj.bias"]
        for i, token in enumerate(tokens):
            query = token @ weights["q_proj.weight"].T + weights["q_proj.bias"]
            merged = []
            for h in range(heads):
                part = slice(h * head_width, (h + 1) * head_width)
                scores = keys[:, part] @ query[part] / math.sqrt(head_width)
                merged.append(torch.softmax(scores, dim=0) @ values[:, part])
            outputs[n, i] = torch.cat(merged) @ weights["c_proj.weight"].T + weights["c_proj.bias"]
    return outputs


@pytest.fixture(scope="module")
def resnet():
    generator = torch.Generator().manual_seed(0)
    state_dict = tiny_resnet_state_dict(seed=3)
    # Non-zero biases and a visible positional embedding, so that a wrong term would show.
    for key in ("q_proj.bias", "k_proj.bias", "v_proj.bias", "c_proj.bias"):
        state_dict[f"visual.attnpool.{key}"] = 0.1 * torch.randn(
            state_dict[f"visual.attnpool.{key}"].shape, generator=generator
        )
    return build_model(state_dict)


@torch.no_grad()
def test_all_queries_match_the_loop_reference_and_token_0_is_the_pooled_feature(resnet):
    pool = resnet.visual.attnpool
    feature_map = torch.randn(2, pool.k_proj.in_features, 2, 2, generator=torch.Generator().manual_seed(1))
    tokens = pool(feature_map, all_queries=True)
    assert tokens.shape == (2, 1 + 4, pool.c_proj.out_features)
    assert (tokens.double() - reference_all_queries(pool, feature_map)).abs().max() < 1e-5
    # One query or all: another matmul shape, equal up to rounding.
    assert torch.allclose(tokens[:, 0], pool(feature_map), rtol=0, atol=1e-6)


@torch.no_grad()
def test_the_resnet_tower_returns_every_token_with_the_usual_feature_first(resnet):
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    tokens = resnet.encode_image(images, return_tokens=True)
    assert tokens.shape == (3, 1 + (64 // 32) ** 2, 32)
    assert torch.allclose(tokens[:, 0], resnet.encode_image(images), rtol=0, atol=1e-6)
    # The local features differ from the global one and from each other.
    assert (tokens[:, 1:] - tokens[:, :1]).abs().amax(-1).min() > 1e-5
    with pytest.raises(ValueError, match="takes no shallow_prompts or deep_prompts"):
        resnet.encode_image(images, shallow_prompts=torch.zeros(2, 256), return_tokens=True)

"""The transformer pieces of CLIP in OpenAI's conventions: blocks and stacks on (L, N, D) =
(tokens, batch, width), the ViT image tower, and the writing of prompt tokens.

`ResidualAttentionBlock.forward(x)` and `Transformer.forward(x)` take (L, N, D) as OpenAI's do;
`block.attn` is an nn.MultiheadAttention called as OpenAI's blocks call it. Prompts are optional
keyword arguments of `Transformer.forward` (deep prompts) and `VisionTransformer.forward`
(shallow and deep prompts, all tokens): without them every module computes what OpenAI's does.
Attention runs through F.scaled_dot_product_attention (flash / memory-efficient kernels on GPU);
the text tower's causal mask is applied as SDPA's `is_causal` rather than as an additive mask.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input and parameter dtypes (as OpenAI's CLIP),
    returned in the input's dtype."""

    def forward(self, x):
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's CLIP was trained with."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class MultiheadAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (same constructor, parameters, call and return value) whose
    self-attention without weights, the call every CLIP block makes, is one fused
    F.scaled_dot_product_attention; every other call is nn.MultiheadAttention's own."""

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        """query = key = value: (L, N, D) -> ((L, N, D), None); other calls: nn.MultiheadAttention.

        attn_mask: None, (L, L) or (N * heads, L, L), float (added to the scores) or bool (True =
        not attended), as nn.MultiheadAttention. is_causal=True is its hint that attn_mask is the
        causal mask: the mask is then not read and SDPA applies causality itself.
        """
        fused = (
            query is key is value
            and not need_weights
            and key_padding_mask is None
            and not self.batch_first
            and self._qkv_same_embed_dim
            and self.bias_k is None
            and not (self.training and self.dropout > 0)
        )
        if not fused:
            return super().forward(
                query,
                key,
                value,
                key_padding_mask=key_padding_mask,
                need_weights=need_weights,
                attn_mask=attn_mask,
                average_attn_weights=average_attn_weights,
                is_causal=is_causal,
            )
        return self._self_attention(query, None if is_causal else attn_mask, is_causal), None

    def _self_attention(self, x, attn_mask, causal):
        length, batch, width = x.shape
        head_width = width // self.num_heads
        # (L, N, 3D) -> 3 x (N, heads, L, D / heads): views, no copies
        query, key, value = (
            F.linear(x, self.in_proj_weight, self.in_proj_bias)
            .view(length, batch, 3, self.num_heads, head_width)
            .permute(2, 1, 3, 0, 4)
            .unbind(0)
        )
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:  # nn.MultiheadAttention's True = masked out
                attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill(attn_mask, float("-inf"))
            attn_mask = attn_mask.to(dtype=query.dtype, device=query.device)
            if attn_mask.dim() == 3:
                attn_mask = attn_mask.view(batch, self.num_heads, length, length)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, is_causal=causal)
        return self.out_proj(attended.permute(2, 0, 1, 3).reshape(length, batch, width))


def causal_attention_mask(length):
    """OpenAI's (length, length) additive mask: 0 on and below the diagonal, -inf above."""
    # On the CPU whatever the default device (build_model builds on "meta"): a plain attribute,
    # as in OpenAI's model, which to() does not move; the fused path never reads it.
    return torch.full((length, length), float("-inf"), device="cpu").triu_(1)


def _is_causal_mask(mask):
    if mask is None or mask.dim() != 2 or mask.shape[0] != mask.shape[1] or mask.is_meta:
        return False
    return torch.equal(mask.cpu(), causal_attention_mask(mask.shape[0]).to(mask.dtype))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block on (L, N, D): x + attention(ln_1(x)), then x + mlp(ln_2(x)).

    attn_mask: None (every token attends to every token), or an additive (L, L) mask as OpenAI's
    text blocks hold (`CLIP.build_attention_mask()`); assigning another tensor to `attn_mask`
    later is honoured. quick_gelu=False gives exact GELU (most open_clip models).
    """

    def __init__(self, d_model, n_head, attn_mask=None, *, quick_gelu=True):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"attention width {d_model} is not divisible by {n_head} heads")
        self.attn = MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(d_model, d_model * 4)),
                    ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
                    ("c_proj", nn.Linear(d_model * 4, d_model)),
                ]
            )
        )
        self.ln_2 = LayerNorm(d_model)
        self.attn_mask = attn_mask
        # Remembered by identity: while attn_mask is still this causal mask, SDPA's is_causal
        # replaces it (fused kernels, no mask transfer, any length up to the mask's).
        self._causal_mask = attn_mask if _is_causal_mask(attn_mask) else None

    def attention(self, x):
        """x: (L, N, D) -> (L, N, D)"""
        mask = self.attn_mask
        if mask is None:
            return self.attn(x, x, x, need_weights=False)[0]
        length = x.shape[0]
        if mask is self._causal_mask:
            return self.attn(x, x, x, need_weights=False, attn_mask=mask[:length, :length], is_causal=True)[0]
        return self.attn(x, x, x, need_weights=False, attn_mask=mask.to(dtype=x.dtype, device=x.device))[0]

    def forward(self, x):
        """x: (L, N, D) -> (L, N, D)"""
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def as_layer_list(deep_prompts):
    """None, a sequence of tensors (list, tuple, nn.ParameterList) or a stacked tensor -> list."""
    return [] if deep_prompts is None else list(deep_prompts)


def expand_prompts(prompts, batch, width, name):
    """prompts: (n, width) shared by every row, or (batch, n, width) -> (batch, n, width)."""
    if prompts.dim() == 2:
        prompts = prompts.unsqueeze(0).expand(batch, -1, -1)
    if prompts.dim() != 3 or prompts.shape[0] != batch or prompts.shape[2] != width:
        raise ValueError(f"{name} must have shape (n, {width}) or ({batch}, n, {width}), got {tuple(prompts.shape)}")
    return prompts


def overwrite_positions(x, values, positions, name):
    """x with x[positions] replaced by `values` (a new tensor, so autograd sees both).

    x: (L, N, D); values: (n, D) or (N, n, D); positions: slice of n consecutive token positions.
    """
    start, stop, step = positions.indices(x.shape[0])
    values = expand_prompts(values, x.shape[1], x.shape[2], name)
    if step != 1 or values.shape[1] != stop - start:
        raise ValueError(
            f"{name} has {values.shape[1]} tokens but is written to positions "
            f"{start}..{stop - 1} (step {step}) of a {x.shape[0]}-token sequence"
        )
    return torch.cat([x[:start], values.transpose(0, 1).to(x.dtype), x[stop:]], dim=0)


class Transformer(nn.Module):
    """A stack of residual attention blocks on (L, N, D), the one place where deep prompts are written."""

    def __init__(self, width, layers, heads, attn_mask=None, *, quick_gelu=True):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, attn_mask, quick_gelu=quick_gelu) for _ in range(layers)]
        )

    def forward(self, x, *, deep_prompts=None, prompt_positions=None):
        """x: (L, N, width) -> (L, N, width), as OpenAI's Transformer.

        deep_prompts: None or J-1 tensors, element k (n, width) or (N, n, width). Block 0 sees x
        as is; before block k+1 (k = 0..J-2) runs, x[prompt_positions] is overwritten by element
        k; blocks J.. run unchanged. prompt_positions: slice of the n token positions.
        """
        deep_prompts = as_layer_list(deep_prompts)
        if not deep_prompts:
            return self.resblocks(x)
        if len(deep_prompts) > self.layers - 1:
            raise ValueError(
                f"{len(deep_prompts)} deep prompts are written before blocks "
                f"1..{len(deep_prompts)}, but this transformer has {self.layers} "
                f"blocks (0..{self.layers - 1}): at most {self.layers - 1} deep prompts"
            )
        if prompt_positions is None:
            raise ValueError("deep prompts need prompt_positions (a slice of the positions they overwrite)")
        for index, block in enumerate(self.resblocks):
            if 1 <= index <= len(deep_prompts):
                x = overwrite_positions(
                    x, deep_prompts[index - 1], prompt_positions, name=f"deep prompt {index - 1} (before block {index})"
                )
            x = block(x)
        return x


class VisionTransformer(nn.Module):
    """ViT image tower: patches + class token -> ln_pre -> transformer -> ln_post -> proj."""

    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim, *, quick_gelu=True):
        super().__init__()
        if input_resolution % patch_size:
            raise ValueError(f"image resolution {input_resolution} is not a multiple of the patch size {patch_size}")
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.width = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, quick_gelu=quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x, shallow_prompts=None, deep_prompts=None, return_tokens=False):
        """Encode images, optionally with prompt tokens.

        x: (N, 3, R, R) images, cast to the tower's dtype. shallow_prompts: None, (n, width)
        shared by all images, or (N, n, width); appended after the 1 + G*G class and patch
        tokens (G = R / patch size). deep_prompts: None or J-1 tensors (n, width) or
        (N, n, width) overwriting those n tokens before blocks 1..J-1; needs shallow_prompts.
        Returns (N, output_dim): the class token after ln_post and proj; with
        return_tokens=True, (N, 1 + G*G + n, output_dim): every token (0 = class token).
        """
        check_images(x, self.input_resolution)
        deep_prompts = as_layer_list(deep_prompts)
        if deep_prompts and shallow_prompts is None:
            raise ValueError(
                "deep visual prompts overwrite the shallow prompt tokens at the end of "
                "the sequence: pass shallow_prompts too"
            )
        x = self.conv1(x.to(self.conv1.weight.dtype))  # (N, width, G, G)
        x = x.flatten(2).transpose(1, 2)  # (N, G*G, width), patches in row-major order
        class_token = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([class_token, x], dim=1) + self.positional_embedding.to(x.dtype)
        num_prompts = 0
        if shallow_prompts is not None:
            prompts = expand_prompts(shallow_prompts, x.shape[0], self.width, "shallow_prompts")
            x = torch.cat([x, prompts.to(x.dtype)], dim=1)  # (N, 1 + G*G + n, width)
            num_prompts = prompts.shape[1]
        x = self.ln_pre(x)
        length = x.shape[1]
        x = x.permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x, deep_prompts=deep_prompts, prompt_positions=slice(length - num_prompts, length))
        x = x.permute(1, 0, 2)  # LND -> NLD
        if return_tokens:
            return self.ln_post(x) @ self.proj
        return self.ln_post(x[:, 0, :]) @ self.proj


def check_images(images, resolution):
    if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (resolution, resolution):
        raise ValueError(
            f"images must have shape (N, 3, {resolution}, {resolution}) for this model, got {tuple(images.shape)}"
        )

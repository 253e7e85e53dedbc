"""CLIP (ViT and ModifiedResNet image towers, causal text transformer) in OpenAI's parameter
layout, with optional prompt tokens in both encoders.

Parameter and buffer names equal the keys of OpenAI's checkpoints, so `load_state_dict` works
both ways. Tensors are batch-first everywhere: (N, L, D) = (batch, tokens, width).

Prompt injection (one implementation for every prompting method; `Transformer.forward` does the
writing):
- text: `prompt_embeddings` (N, L, width) replace the token embeddings (the caller has put its
  context vectors at positions 1..n); `deep_prompts[k]` overwrites positions 1..n at the input of
  block k+1.
- image (ViT): `shallow_prompts` (n tokens) are appended after the class and patch tokens;
  `deep_prompts[k]` overwrites those last n positions at the input of block k+1.
Blocks after the last deep prompt run unchanged, so the last written prompts flow on.
"""

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

# Keys that OpenAI's TorchScript archives keep next to the weights; they are not weights.
ARCHIVE_ATTRIBUTE_KEYS = ("input_resolution", "context_length", "vocab_size")
HEAD_WIDTH = 64  # OpenAI's rule: heads = width // 64


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


def _split_heads(x, heads):
    """(N, L, D) -> (N, heads, L, D / heads)"""
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def _merge_heads(x):
    """(N, heads, L, D / heads) -> (N, L, D)"""
    batch, heads, length, head_width = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_width)


class MultiheadSelfAttention(nn.Module):
    """Self-attention with nn.MultiheadAttention's parameter names (in_proj_weight,
    in_proj_bias, out_proj) and initialisation, batch-first, computed by
    F.scaled_dot_product_attention (flash / memory-efficient kernels on GPU)."""

    def __init__(self, width, heads):
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x, causal=False):
        """x: (N, L, D) -> (N, L, D); with causal=True token i attends to tokens 0..i only."""
        query, key, value = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        attended = F.scaled_dot_product_attention(
            _split_heads(query, self.heads),
            _split_heads(key, self.heads),
            _split_heads(value, self.heads),
            is_causal=causal,
        )
        return self.out_proj(_merge_heads(attended))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width, heads, causal=False, quick_gelu=True):
        super().__init__()
        self.causal = causal
        self.attn = MultiheadSelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, 4 * width)),
                    ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
                    ("c_proj", nn.Linear(4 * width, width)),
                ]
            )
        )
        self.ln_2 = LayerNorm(width)

    def forward(self, x):
        """x: (N, L, D) -> (N, L, D)"""
        x = x + self.attn(self.ln_1(x), causal=self.causal)
        return x + self.mlp(self.ln_2(x))


def _as_layer_list(deep_prompts):
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
    """x with x[:, positions] replaced by `values` (a new tensor, so autograd sees both).

    x: (N, L, D); values: (n, D) or (N, n, D); positions: slice of n consecutive positions.
    """
    start, stop, step = positions.indices(x.shape[1])
    values = expand_prompts(values, x.shape[0], x.shape[2], name)
    if step != 1 or values.shape[1] != stop - start:
        raise ValueError(
            f"{name} has {values.shape[1]} tokens but is written to positions "
            f"{start}..{stop - 1} (step {step}) of a {x.shape[1]}-token sequence"
        )
    return torch.cat([x[:, :start], values.to(x.dtype), x[:, stop:]], dim=1)


class Transformer(nn.Module):
    """A stack of residual attention blocks, the one place where deep prompts are written."""

    def __init__(self, width, layers, heads, causal=False, quick_gelu=True):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, causal, quick_gelu) for _ in range(layers)]
        )

    def forward(self, x, deep_prompts=None, prompt_positions=None):
        """x: (N, L, width) -> (N, L, width).

        deep_prompts: None or J-1 tensors, element k (n, width) or (N, n, width). Block 0 sees x
        as is; before block k+1 (k = 0..J-2) runs, x[:, prompt_positions] is overwritten by
        element k; blocks J.. run unchanged. prompt_positions: slice of the n positions.
        """
        deep_prompts = _as_layer_list(deep_prompts)
        if len(deep_prompts) > self.layers - 1:
            raise ValueError(
                f"{len(deep_prompts)} deep prompts are written before blocks "
                f"1..{len(deep_prompts)}, but this transformer has {self.layers} "
                f"blocks (0..{self.layers - 1}): at most {self.layers - 1} deep prompts"
            )
        if deep_prompts and prompt_positions is None:
            raise ValueError("deep prompts need prompt_positions (a slice of the positions they overwrite)")
        for index, block in enumerate(self.resblocks):
            if 1 <= index <= len(deep_prompts):
                x = overwrite_positions(
                    x, deep_prompts[index - 1], prompt_positions, name=f"deep prompt {index - 1} (before block {index})"
                )
            x = block(x)
        return x


class VisionTransformer(nn.Module):
    """ViT image tower: patches + class token -> transformer -> ln_post -> proj."""

    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim, quick_gelu=True):
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
        _check_images(x, self.input_resolution)
        deep_prompts = _as_layer_list(deep_prompts)
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
        x = self.transformer(x, deep_prompts, prompt_positions=slice(length - num_prompts, length))
        if return_tokens:
            return self.ln_post(x) @ self.proj
        return self.ln_post(x[:, 0]) @ self.proj


def _check_images(images, resolution):
    if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (resolution, resolution):
        raise ValueError(
            f"images must have shape (N, 3, {resolution}, {resolution}) for this model, got {tuple(images.shape)}"
        )


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3, 1x1 convs, 4x expansion) that downsamples by average pooling
    before the last conv (and before the shortcut conv) instead of a strided conv."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            # Keys "-1" (no parameters), "0", "1" give OpenAI's names downsample.0.*, downsample.1.*
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * self.expansion)),
                    ]
                )
            )

    def forward(self, x):
        """x: (N, inplanes, H, W) -> (N, 4 planes, H / stride, W / stride)"""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + shortcut)


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean feature (plus positional embedding) attends to all H*W
    features; the result is projected to output_dim."""

    def __init__(self, spatial_dim, embed_dim, num_heads, output_dim):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial_dim**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x):
        """x: (N, C, H, W) -> (N, output_dim)"""
        x = x.flatten(2).transpose(1, 2)  # (N, H*W, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        pooled = F.scaled_dot_product_attention(
            _split_heads(self.q_proj(x[:, :1]), self.num_heads),
            _split_heads(self.k_proj(x), self.num_heads),
            _split_heads(self.v_proj(x), self.num_heads),
        )  # (N, heads, 1, C / heads)
        return self.c_proj(_merge_heads(pooled)[:, 0])


class ModifiedResNet(nn.Module):
    """OpenAI's ResNet image tower: a 3-conv stem with average pooling, four stages of
    anti-aliased bottlenecks, and attention pooling instead of global average pooling."""

    def __init__(self, layers, output_dim, heads, input_resolution=224, width=64):
        super().__init__()
        if input_resolution % 32 or len(layers) != 4:
            raise ValueError(
                f"ModifiedResNet needs an image resolution that is a multiple of 32 and four "
                f"stage depths, got {input_resolution} and {tuple(layers)}"
            )
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        stages = []
        for index, blocks in enumerate(layers):
            planes, stride = width * 2**index, (1 if index == 0 else 2)
            stages.append(
                nn.Sequential(
                    Bottleneck(inplanes, planes, stride),
                    *[Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(blocks - 1)],
                )
            )
            inplanes = planes * Bottleneck.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def forward(self, x, shallow_prompts=None, deep_prompts=None, return_tokens=False):
        """x: (N, 3, R, R) images, cast to the tower's dtype -> (N, output_dim)."""
        if shallow_prompts is not None or _as_layer_list(deep_prompts) or return_tokens:
            raise ValueError(
                "the ModifiedResNet image tower has no token sequence: it takes no "
                "shallow_prompts or deep_prompts and cannot return_tokens (use a ViT backbone)"
            )
        _check_images(x, self.input_resolution)
        x = x.to(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu3(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class CLIP(nn.Module):
    """CLIP with OpenAI's constructor and state-dict layout; one class for every prompting method.

    vision_layers: an int for a ViT image tower, four ints (blocks per stage) for ModifiedResNet.
    vision_heads (keyword only, default OpenAI's rule: ViT width // 64, ResNet width * 32 // 64)
    and quick_gelu (default True, as OpenAI) exist for open_clip checkpoints that differ, e.g.
    LAION ViT-H/14: vision_heads=16, quick_gelu=False.
    """

    def __init__(
        self,
        embed_dim,
        image_resolution,
        vision_layers,
        vision_width,
        vision_patch_size,
        context_length,
        vocab_size,
        transformer_width,
        transformer_heads,
        transformer_layers,
        *,
        vision_heads=None,
        quick_gelu=True,
    ):
        super().__init__()
        self.context_length = context_length
        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(
                layers=vision_layers,
                output_dim=embed_dim,
                heads=vision_heads or vision_width * 32 // HEAD_WIDTH,
                input_resolution=image_resolution,
                width=vision_width,
            )
        else:
            self.visual = VisionTransformer(
                input_resolution=image_resolution,
                patch_size=vision_patch_size,
                width=vision_width,
                layers=vision_layers,
                heads=vision_heads or vision_width // HEAD_WIDTH,
                output_dim=embed_dim,
                quick_gelu=quick_gelu,
            )
        self.transformer = Transformer(
            transformer_width, transformer_layers, transformer_heads, causal=True, quick_gelu=quick_gelu
        )
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.empty([]))
        self.initialize_parameters()

    def initialize_parameters(self):
        """OpenAI's initialisation: small normal embeddings, depth-scaled text transformer
        weights, the temperature at 1/0.07, and for ResNets normal attention-pool projections and
        zero last-BN scales (every bottleneck starts as the identity)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.constant_(self.logit_scale, math.log(1 / 0.07))
        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            for projection in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(projection.weight, std=pool.c_proj.in_features**-0.5)
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4):
                for block in stage:
                    nn.init.zeros_(block.bn3.weight)
        width, layers = self.transformer.width, self.transformer.layers
        attn_std = width**-0.5
        proj_std = attn_std * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    @property
    def dtype(self):
        """The dtype of the image tower's first conv: the dtype inputs are cast to."""
        return self.visual.conv1.weight.dtype

    def encode_image(self, image, shallow_prompts=None, deep_prompts=None, return_tokens=False):
        """image: (N, 3, R, R) -> (N, embed_dim), or all tokens; see VisionTransformer.forward."""
        return self.visual(
            image, shallow_prompts=shallow_prompts, deep_prompts=deep_prompts, return_tokens=return_tokens
        )

    def encode_text(self, text, prompt_embeddings=None, deep_prompts=None, return_tokens=False):
        """Encode token sequences, optionally with prompt tokens.

        text: (N, L) int64 token ids (L <= context_length); the end-of-text token of each row is
        at text.argmax(-1). prompt_embeddings: None or (N, L, width) input embeddings used
        instead of token_embedding(text). deep_prompts: None or J-1 tensors, element k
        (n, width) or (N, n, width), overwriting positions 1..n before block k+1.
        Returns (N, embed_dim): the end-of-text token after ln_final and text_projection; with
        return_tokens=True, (N, L, embed_dim): every token.
        """
        context_length = self.positional_embedding.shape[0]
        if text.dim() != 2 or text.shape[1] > context_length:
            raise ValueError(f"text must be (N, L) token ids with L <= {context_length}, got {tuple(text.shape)}")
        batch, length = text.shape
        if prompt_embeddings is None:
            x = self.token_embedding(text)
        elif prompt_embeddings.shape != (batch, length, self.transformer.width):
            raise ValueError(
                f"prompt_embeddings must have shape ({batch}, {length}, "
                f"{self.transformer.width}) to match text, got {tuple(prompt_embeddings.shape)}"
            )
        else:
            x = prompt_embeddings
        x = x.to(self.dtype) + self.positional_embedding[:length].to(self.dtype)
        deep_prompts = _as_layer_list(deep_prompts)
        num_prompts = deep_prompts[0].shape[-2] if deep_prompts else 0
        x = self.ln_final(self.transformer(x, deep_prompts, prompt_positions=slice(1, 1 + num_prompts)))
        if return_tokens:
            return x @ self.text_projection
        return x[torch.arange(batch, device=x.device), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, text):
        """Cosine similarities scaled by exp(logit_scale): (N_image, N_text) and its transpose."""
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


LOW_PRECISION_PROJECTIONS = ("text_projection", "proj")


def convert_weights(model, dtype=torch.float16):
    """Store the matmul weights (conv, linear and attention weights and biases, text_projection,
    visual.proj) in `dtype`, as OpenAI ships its checkpoints; norms, embeddings and the logit
    scale stay float32."""
    for module in model.modules():
        matmul_module = isinstance(module, (nn.Conv2d, nn.Linear, MultiheadSelfAttention))
        for name, parameter in module.named_parameters(recurse=False):
            if matmul_module or name in LOW_PRECISION_PROJECTIONS:
                parameter.data = parameter.data.to(dtype)
    return model


def _require(state_dict, key):
    if key not in state_dict:
        raise KeyError(
            f"state dict has no {key!r}: not a CLIP state dict in OpenAI's layout "
            f"(keys found: {', '.join(list(state_dict)[:5])}, ...)"
        )
    return state_dict[key]


def _count_blocks(state_dict, prefix):
    """Number of blocks <prefix><i>.* in the state dict; the indices must be 0..count-1."""
    indices = {int(key[len(prefix) :].split(".")[0]) for key in state_dict if key.startswith(prefix)}
    if indices != set(range(len(indices))):
        raise ValueError(
            f"state dict blocks {prefix}<i> have indices {sorted(indices)}, expected 0..{len(indices) - 1}"
        )
    return len(indices)


def _grid_size(positional_embedding, key):
    """Side G of the token grid from a (G*G + 1, width) positional embedding."""
    grid = math.isqrt(positional_embedding.shape[0] - 1)
    if grid * grid + 1 != positional_embedding.shape[0]:
        raise ValueError(f"{key} has {positional_embedding.shape[0]} rows, expected G*G + 1 for a square grid")
    return grid


def _heads_for(width, key):
    if width % HEAD_WIDTH:
        raise ValueError(
            f"{key}: width {width} is not a multiple of {HEAD_WIDTH}, so the number of "
            f"attention heads (width // {HEAD_WIDTH}) cannot be inferred"
        )
    return width // HEAD_WIDTH


def infer_dimensions(state_dict):
    """The CLIP constructor arguments that a state dict in OpenAI's layout was built with."""
    dims = dict(
        embed_dim=_require(state_dict, "text_projection").shape[1],
        context_length=_require(state_dict, "positional_embedding").shape[0],
        vocab_size=_require(state_dict, "token_embedding.weight").shape[0],
        transformer_width=_require(state_dict, "ln_final.weight").shape[0],
        transformer_layers=_count_blocks(state_dict, "transformer.resblocks."),
    )
    dims["transformer_heads"] = _heads_for(dims["transformer_width"], "ln_final.weight")
    if "visual.proj" in state_dict:
        conv = _require(state_dict, "visual.conv1.weight")  # (width, 3, patch, patch)
        grid = _grid_size(_require(state_dict, "visual.positional_embedding"), "visual.positional_embedding")
        dims.update(
            vision_width=conv.shape[0],
            vision_patch_size=conv.shape[-1],
            image_resolution=grid * conv.shape[-1],
            vision_layers=_count_blocks(state_dict, "visual.transformer.resblocks."),
        )
    elif "visual.attnpool.positional_embedding" in state_dict:
        grid = _grid_size(state_dict["visual.attnpool.positional_embedding"], "visual.attnpool.positional_embedding")
        dims.update(
            vision_width=_require(state_dict, "visual.layer1.0.conv1.weight").shape[0],
            vision_patch_size=None,
            image_resolution=grid * 32,
            vision_layers=tuple(_count_blocks(state_dict, f"visual.layer{stage}.") for stage in range(1, 5)),
        )
    else:
        raise KeyError(
            "state dict has neither 'visual.proj' (ViT) nor 'visual.attnpool.positional_embedding' "
            "(ModifiedResNet): not a CLIP state dict in OpenAI's layout"
        )
    return dims


def build_model(state_dict, *, vision_heads=None, quick_gelu=True):
    """A CLIP in eval mode holding `state_dict` (OpenAI layout), every dimension inferred from it.

    The model follows the checkpoint's precision: an fp32 state dict gives an fp32 model; an
    fp16 (or bf16) one, as OpenAI ships them, gives OpenAI's mixed storage (see convert_weights).
    The keys input_resolution, context_length and vocab_size of TorchScript archives are ignored.
    vision_heads / quick_gelu: see CLIP (needed for some open_clip checkpoints, not for OpenAI's).
    """
    state_dict = {key: value for key, value in state_dict.items() if key not in ARCHIVE_ATTRIBUTE_KEYS}
    dims = infer_dimensions(state_dict)
    if vision_heads is None and not isinstance(dims["vision_layers"], tuple):
        _heads_for(dims["vision_width"], "visual.conv1.weight")
    storage_dtype = state_dict["visual.conv1.weight"].dtype
    if storage_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"visual.conv1.weight has dtype {storage_dtype}; expected float32, float16 or bfloat16")
    with torch.device("meta"):  # skip the random initialisation: every tensor is loaded below
        model = CLIP(**dims, vision_heads=vision_heads, quick_gelu=quick_gelu)
    model = model.to_empty(device="cpu")
    if storage_dtype != torch.float32:
        convert_weights(model, storage_dtype)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()

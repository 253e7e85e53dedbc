"""OpenAI's ModifiedResNet image tower (RN50, RN101, RN50x4, ...): module and parameter names,
constructor arguments and forward as in OpenAI's clip/model.py. It has no token sequence, so it
takes no prompts; with ``return_tokens`` its attention pool is queried by every position of the
final feature map (PLOT's local features), token 0 being the usual image feature."""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import as_layer_list, check_images


def _split_heads(x, heads):
    """(N, L, D) -> (N, heads, L, D / heads)"""
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def _merge_heads(x):
    """(N, heads, L, D / heads) -> (N, L, D)"""
    batch, heads, length, head_width = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_width)


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
        self.stride = stride
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
    features; the result is projected to output_dim.

    With ``all_queries`` every one of the 1 + H*W tokens (the mean, then the positions in
    row-major order) is a query over the same keys and values, through the same projections:
    token 0 is the usual pooled feature, tokens 1..H*W are per-position features in the joint
    space (PLOT's "local features", as PLOT's code computes them).
    """

    def __init__(self, spacial_dim, embed_dim, num_heads, output_dim=None):  # OpenAI's argument names
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def forward(self, x, all_queries=False):
        """x: (N, C, H, W) -> (N, output_dim); with all_queries, (N, 1 + H*W, output_dim)."""
        x = x.flatten(2).transpose(1, 2)  # (N, H*W, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        queries = x if all_queries else x[:, :1]
        pooled = F.scaled_dot_product_attention(
            _split_heads(self.q_proj(queries), self.num_heads),
            _split_heads(self.k_proj(x), self.num_heads),
            _split_heads(self.v_proj(x), self.num_heads),
        )  # (N, heads, queries, C / heads)
        pooled = self.c_proj(_merge_heads(pooled))
        return pooled if all_queries else pooled[:, 0]


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
        self._inplanes = width  # the input width of the next stage, advanced by _make_layer (as OpenAI's)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes, blocks, stride=1):
        """A stage: one bottleneck that changes width (and stride), then blocks - 1 that keep it."""
        stage = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        stage += [Bottleneck(self._inplanes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*stage)

    def forward(self, x, shallow_prompts=None, deep_prompts=None, return_tokens=False):
        """x: (N, 3, R, R) images, cast to the tower's dtype -> (N, output_dim); with
        return_tokens=True, (N, 1 + (R/32)^2, output_dim): the attention pool queried by the mean
        token (token 0, the usual output) and by every position of the last feature map."""
        if shallow_prompts is not None or as_layer_list(deep_prompts):
            raise ValueError(
                "the ModifiedResNet image tower has no token sequence: it takes no "
                "shallow_prompts or deep_prompts (use a ViT backbone)"
            )
        check_images(x, self.input_resolution)
        x = x.to(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu3(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x, all_queries=return_tokens)

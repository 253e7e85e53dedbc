"""CLIP with OpenAI's module conventions and parameter layout (ViT and ModifiedResNet image
towers, causal text transformer), plus optional prompt tokens in both encoders.

Module names, attributes, call signatures and tensor layouts are OpenAI's (clip/model.py of
openai/CLIP), so trainer files written against it (CoOp, CoCoOp, KgCoOp, ProGrad, ...) run
unchanged: `Transformer.forward(x)` and `ResidualAttentionBlock.forward(x)` take (L, N, D) =
(tokens, batch, width), `block.attn` is an nn.MultiheadAttention called as
`attn(x, x, x, need_weights=False, attn_mask=...)`, and `CLIP` has `encode_image`,
`encode_text`, `forward` -> (logits_per_image, logits_per_text), `dtype`. The encoders take and
return batch-first tensors, as OpenAI's do. Parameter names equal the keys of OpenAI's
checkpoints, so `load_state_dict` works both ways.

Prompt injection (one implementation for every prompting method): optional arguments of
`encode_text` (prompt_embeddings, deep_prompts, return_tokens) and `encode_image`
(shallow_prompts, deep_prompts, return_tokens); the writing happens in `Transformer.forward`'s
keyword arguments `deep_prompts` and `prompt_positions` (clip/transformer.py). Without them every
module computes exactly what OpenAI's does.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import (
    ARCHIVE_ATTRIBUTE_KEYS,
    HEAD_WIDTH,
    CLIPWeightsError,
    infer_dimensions,
    openai_architecture,
    vision_attention_width,
)
from .resnet import AttentionPool2d, Bottleneck, ModifiedResNet
from .transformer import (
    LayerNorm,
    MultiheadAttention,
    QuickGELU,
    ResidualAttentionBlock,
    Transformer,
    VisionTransformer,
    as_layer_list,
    causal_attention_mask,
)

__all__ = [
    "CLIP",
    "AttentionPool2d",
    "Bottleneck",
    "CLIPWeightsError",
    "LayerNorm",
    "ModifiedResNet",
    "MultiheadAttention",
    "QuickGELU",
    "ResidualAttentionBlock",
    "Transformer",
    "VisionTransformer",
    "build_model",
    "convert_weights",
    "infer_dimensions",
]


class CLIP(nn.Module):
    """CLIP with OpenAI's constructor and state-dict layout; one class for every prompting method.

    The positional arguments are OpenAI's. vision_layers: an int for a ViT image tower, four ints
    (blocks per stage) for ModifiedResNet. vision_heads (keyword only, default OpenAI's rule: ViT
    width // 64, ResNet width * 32 // 64) and quick_gelu (default True, as OpenAI) exist for
    open_clip models that differ, e.g. LAION ViT-H/14: vision_heads=16, quick_gelu=False.
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
            transformer_width,
            transformer_layers,
            transformer_heads,
            attn_mask=self.build_attention_mask(),
            quick_gelu=quick_gelu,
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

    def build_attention_mask(self):
        """The text tower's causal mask (context_length, context_length): -inf above the diagonal."""
        return causal_attention_mask(self.context_length)

    @property
    def dtype(self):
        """The dtype of the image tower's first conv: the dtype inputs are cast to."""
        return self.visual.conv1.weight.dtype

    def encode_image(self, image, shallow_prompts=None, deep_prompts=None, return_tokens=False):
        """image: (N, 3, R, R) -> (N, embed_dim), or all tokens (token 0 = the usual feature); see
        VisionTransformer.forward and ModifiedResNet.forward."""
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
        deep_prompts = as_layer_list(deep_prompts)
        num_prompts = deep_prompts[0].shape[-2] if deep_prompts else 0
        x = x.permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x, deep_prompts=deep_prompts, prompt_positions=slice(1, 1 + num_prompts))
        x = self.ln_final(x.permute(1, 0, 2))  # LND -> NLD
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
        matmul_module = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.MultiheadAttention))
        for name, parameter in module.named_parameters(recurse=False):
            if matmul_module or name in LOW_PRECISION_PROJECTIONS:
                parameter.data = parameter.data.to(dtype)
    return model


def build_model(state_dict, *, quick_gelu=True, vision_heads=None, text_heads=None):
    """A CLIP in eval mode holding `state_dict` (OpenAI layout), every dimension inferred from it.

    As OpenAI's build_model, the architecture is OpenAI's unless told otherwise: QuickGELU and
    64-wide heads (quick_gelu, vision_heads, text_heads override them; clip.load takes them from
    the checkpoint's record). The model follows the checkpoint's precision: an fp32 state dict
    gives an fp32 model; an fp16 (or bf16) one, as OpenAI ships them, gives OpenAI's mixed
    storage (see convert_weights). The keys input_resolution, context_length and vocab_size of
    TorchScript archives are ignored. A state dict that is not CLIP's, or whose keys or shapes do
    not all fit the model, raises CLIPWeightsError naming the keys.
    """
    state_dict = {key: value for key, value in state_dict.items() if key not in ARCHIVE_ATTRIBUTE_KEYS}
    dims = infer_dimensions(state_dict)
    defaults = openai_architecture(dims)
    vision_heads = defaults["vision_heads"] if vision_heads is None else vision_heads
    text_heads = defaults["text_heads"] if text_heads is None else text_heads
    for heads, name, width in (
        (vision_heads, "vision_heads", vision_attention_width(dims)),
        (text_heads, "text_heads", dims["transformer_width"]),
    ):
        if heads is None:
            raise CLIPWeightsError(
                f"the {name.split('_')[0]} attention width {width} is not a multiple of {HEAD_WIDTH}, so "
                f"OpenAI's head count (width // {HEAD_WIDTH}) does not apply: pass {name}"
            )
    storage_dtype = state_dict["visual.conv1.weight"].dtype
    if storage_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise CLIPWeightsError(f"visual.conv1.weight has dtype {storage_dtype}; expected float32, float16 or bfloat16")
    with torch.device("meta"):  # skip the random initialisation: every tensor is loaded below
        model = CLIP(**{**dims, "transformer_heads": text_heads}, vision_heads=vision_heads, quick_gelu=quick_gelu)
    model = model.to_empty(device="cpu")
    if storage_dtype != torch.float32:
        convert_weights(model, storage_dtype)
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise CLIPWeightsError(f"the state dict does not fit a CLIP of its inferred dimensions: {error}") from None
    if missing or unexpected:
        raise CLIPWeightsError(
            f"the state dict does not fit a CLIP in OpenAI's layout: {_listing(missing)} missing, "
            f"{_listing(unexpected)} unexpected"
        )
    return model.eval()


def _listing(keys, shown=5):
    """'no keys', '1 key (a)', '3 keys (a, b, c)' for messages."""
    if not keys:
        return "no keys"
    names = ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")
    return f"{len(keys)} key{'s' if len(keys) > 1 else ''} ({names})"

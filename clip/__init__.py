"""CLIP backbone: tokenizer, OpenAI-compatible model with prompt injection, weight loading.

`import clip` gives clip.load, clip.tokenize, clip.available_models, clip.build_model as OpenAI's
package does; CoOp-style code may also use `from clip import clip` (the loading module:
clip._MODELS, clip._download) and `from clip.simple_tokenizer import SimpleTokenizer`.
"""

from .architecture import CLIPWeightsError
from .clip import _MODELS, _download, available_models, load, tokenize
from .model import CLIP, build_model, convert_weights

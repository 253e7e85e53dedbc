"""Prompt-learning methods on a frozen CLIP; importing this package registers the trainers.

- ``align``: ALIGN (registered as "ALIGN" and, with the official config keys, "MMP").
- ``zsclip``: zero-shot CLIP ("ZeroshotCLIP"), the baseline of every protocol.
- ``ot``: batched Sinkhorn and the hierarchical OT (pure tensor code).
- ``backbone``: loading the frozen CLIP named by MODEL.BACKBONE.
"""

from . import align, zsclip  # noqa: F401  (registers the trainers)

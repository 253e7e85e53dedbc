"""``compute_accuracy``."""

__all__ = ["compute_accuracy"]


def compute_accuracy(output, target, topk=(1,)):
    """Top-k accuracies in percent.

    Args:
        output: (B, num_classes) scores, or a tuple/list whose first element is.
        target: (B,) labels.
        topk (tuple): the k values.

    Returns:
        list of 1-element float tensors, one per k: ``100 * correct / B``.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    ranked = output.topk(max(topk), dim=1).indices  # (B, max_k), best first
    hits = ranked == target.unsqueeze(1)  # (B, max_k)
    return [hits[:, :k].any(dim=1).float().sum(0, keepdim=True) * (100.0 / target.size(0)) for k in topk]

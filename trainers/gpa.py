"""Gaussian prompt aggregation (GPA, PromptSRC): a weighted average of the learned tensors over epochs.

The model a run ends with is sum_e w_e x (the learned tensors after epoch e), e = 1..E, with
Gaussian weights over the epochs. The running sum lives in the trainer, so it must travel in the
resumable checkpoint (``PromptAggregate.state_dict``) for a resumed run to end with the same model.

- ``gaussian_epoch_weights``: the weights w_1..w_E.
- ``PromptAggregate``: the running weighted sum, per tensor, in float32.
"""

import math

import torch


def gaussian_epoch_weights(mean, std, max_epoch):
    """[w_1, ..., w_E] (floats summing to 1): the normal density N(e; mean, std^2) at e = 1..E,
    divided by its sum over those epochs.

    Computed from the log densities (the factor 1 / (std sqrt(2 pi)) cancels; the largest is
    subtracted before exp), so the weights are defined even where every density underflows (a
    mean far outside 1..E puts the weight on the nearest epochs). std must be > 0.
    """
    log_densities = [-0.5 * ((epoch - mean) / std) ** 2 for epoch in range(1, max_epoch + 1)]
    top = max(log_densities)
    unnormalised = [math.exp(value - top) for value in log_densities]
    total = sum(unnormalised)
    return [value / total for value in unnormalised]


def format_weights(weights):
    """ "1: 0.0000, 2: 0.0001, ..." (epoch: weight, 4 decimals), for the log."""
    return ", ".join(f"{epoch}: {weight:.4f}" for epoch, weight in enumerate(weights, start=1))


class PromptAggregate:
    """The running sum over the finished epochs e of w_e x (the learned tensors after epoch e).

    weights: [w_1, ..., w_E], one per epoch of the run.
    sums: {key: float32 tensor of the key's shape}, on the learner's device; every tensor in
        float32 whatever its own dtype (a float16 context under PREC fp16 is summed in float32
        and rounded once, when the aggregate is loaded into the learner).
    epochs: how many epochs were added (epoch ``epochs + 1`` is next).
    """

    def __init__(self, weights):
        self.weights = list(weights)
        self.sums = {}
        self.epochs = 0

    @property
    def complete(self):
        """Whether every epoch of the run was added (the sums are the GPA model)."""
        return self.epochs == len(self.weights)

    @torch.no_grad()
    def add(self, state):
        """Add ``state`` ({key: tensor}, the learned tensors after the next epoch) with that epoch's
        weight; returns the weight."""
        if self.complete:
            raise RuntimeError(f"GPA: all {len(self.weights)} epochs were added already")
        weight = self.weights[self.epochs]
        for key, value in state.items():
            term = value.detach().float() * weight
            if key in self.sums:
                self.sums[key].add_(term)
            else:
                self.sums[key] = term
        self.epochs += 1
        return weight

    def state_dict(self):
        """Plain data for a checkpoint: {"epochs": int, "weights": [float], "sums": {key: CPU tensor}}."""
        return {
            "epochs": self.epochs,
            "weights": list(self.weights),
            "sums": {key: value.cpu() for key, value in self.sums.items()},
        }

    def load_state_dict(self, state, device):
        """Continue from ``state`` (``state_dict()``'s), the sums moved to ``device``.

        The weights of the epochs already added stay in the sums as they were; ``self.weights``
        (this run's) apply to the next ones. Returns the stored weights, for the caller to
        compare.
        """
        self.epochs = int(state["epochs"])
        sums = state["sums"]
        self.sums = {key: value.to(device=device, dtype=torch.float32, copy=True) for key, value in sums.items()}
        return list(state["weights"])

"""Shared test helpers: an independent torch implementation of the original.

``torch_get_action`` is the original component's ``get_action`` from
``03_aggregation.rst``, kept line for line, with two changes that the
original needs to run at all on the shapes we test: ``squeeze()`` became
``reshape(-1)`` (with one model the original's squeeze gives a 0-d tensor
that cannot be indexed), and an optional ``action`` lets a test ask for the
contributions of a given (sampled) action.
"""

from __future__ import annotations

import numpy as np

try:
    import torch
    from torch.distributions import Categorical
    from torch.distributions.utils import logits_to_probs

    HAVE_TORCH = True
except ImportError:  # parity tests skip without torch
    HAVE_TORCH = False


def torch_get_action(dict_actions_logits, deterministic=False, action=None):
    all_probs = torch.stack(
        [
            logits_to_probs(torch.tensor(v).unsqueeze(0))
            for v in dict_actions_logits.values()
        ]
    )
    probs = all_probs.sum(0)
    dist = Categorical(probs=probs)
    if action is not None:
        action = np.array([action])
    elif deterministic:
        action = torch.argmax(dist.probs, dim=1).numpy()
    else:
        action = dist.sample().numpy()
    ai = action[0]
    ai_cont = (all_probs[:, :, ai].reshape(-1) / probs[:, ai]).numpy()
    contribution = {k: ai_cont[i] for i, k in enumerate(dict_actions_logits.keys())}
    return action, contribution, dist.probs[0].numpy()

"""PyTorch baselines: the original ``get_action`` and its vectorised form.

``get_action`` behaves as the original component's helper
(``03_aggregation.rst``), which ``original_03_aggregation.py`` imports from
here; its body is ``get_action_detailed``, the original's lines with two
additions the parity tests (``tests/helpers.py``) use: an optional
``action`` asks for the contributions of a given (sampled) action, and the
ensemble distribution is returned too.  ``batched`` is what a torch user
would write for many steps at once (softmax, sum over models, sample or
argmax, contributions by gather), run on one thread.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Categorical
from torch.distributions.utils import logits_to_probs


def get_action(dict_actions_logits, deterministic=False):
    action, contribution, _ = get_action_detailed(dict_actions_logits, deterministic)
    return action, contribution


def get_action_detailed(dict_actions_logits, deterministic=False, action=None):
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
    ai_cont = (all_probs[:, :, ai].squeeze() / probs[:, ai]).numpy()
    contribution = {k: ai_cont[i] for i, k in enumerate(dict_actions_logits.keys())}
    return action, contribution, dist.probs[0].numpy()


def batched(x: torch.Tensor, deterministic: bool):
    """x: (batch, n_models, n_actions) -> (action, contribution, probs)."""
    p = torch.softmax(x, dim=-1)
    s = p.sum(dim=-2)
    probs = s / s.sum(dim=-1, keepdim=True)
    if deterministic:
        action = probs.argmax(dim=-1)
    else:
        action = torch.multinomial(probs, 1)[:, 0]
    idx = action[:, None, None].expand(-1, x.shape[1], 1)
    pa = torch.gather(p, -1, idx)[..., 0]
    contribution = pa / pa.sum(dim=-1, keepdim=True)
    return action, contribution, probs

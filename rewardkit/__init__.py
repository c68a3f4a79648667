"""rewardkit: train, evaluate and serve pairwise (Bradley–Terry) reward models.

    from rewardkit import RewardScorer, RemoteRewardModel
    scorer = RewardScorer.from_pretrained("models/reward_model")      # in process
    rewards = scorer.score(prompt, candidates)
    remote = RemoteRewardModel("http://rm-host:8000", api_key=key)    # over HTTP, from `python -m stages.serve`

The public names load on first use, so the data stages import this package without torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "RewardScorer": "rewardkit.scoring.scorer",
    "RemoteRewardModel": "rewardkit.serving.client",
    "load_artifact": "rewardkit.modeling.artifact",
    "save_artifact": "rewardkit.modeling.artifact",
    "RewardModel": "rewardkit.modeling.model",
    "UserError": "rewardkit.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rewardkit' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

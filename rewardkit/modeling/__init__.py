"""The reward model in torch: loading a classifier of any family, the scratch bases' weights, the fast forwards
(rewardkit.modeling.fast), the artifact on disk, device and precision, batching and padding, forward-only scoring,
and the objective (the Bradley–Terry loss and the tie rule).

May import: the ground floor, rewardkit.data and rewardkit.encoding.
"""

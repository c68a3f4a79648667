"""A trained reward model used on new text: RewardScorer (the Python API for best-of-n and RLHF reward
functions) and the score CLI's JSONL job.

May import: the ground floor, rewardkit.data, rewardkit.encoding and rewardkit.modeling.
"""

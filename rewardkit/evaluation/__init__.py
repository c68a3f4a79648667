"""The evaluate stage: scoring the held-out store and the extra sets (job), the metrics and breakdowns, the
released model's card, and the run summary.

May import: the ground floor, rewardkit.data, rewardkit.encoding and rewardkit.modeling.
"""

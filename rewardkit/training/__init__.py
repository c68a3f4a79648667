"""The train stage: the optimisation loop (loop), the job around it (job), resumable checkpoints and the run key
that guards them, pre-emption by signal, torch.distributed and the torchrun launcher.

May import: the ground floor, rewardkit.data, rewardkit.encoding and rewardkit.modeling.
"""

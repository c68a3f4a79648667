"""Packed forwards without work on padding, on the very same transformers weights: DeBERTa-v3 (deberta, with its
building blocks in ops) and the BERT family (bert). Each is checked against transformers' forward by the tests.

May import: the ground floor, rewardkit.data, rewardkit.encoding, and rewardkit.modeling.fast's own modules.
"""

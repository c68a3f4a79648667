"""Rows to token ids: the base's config and tokenizer (hub, local or scratch), how each family reads a (prompt,
response), the truncation policy, the tokenize stage's job and the memory-mapped token stores. No torch here.

May import: the ground floor and rewardkit.data.
"""

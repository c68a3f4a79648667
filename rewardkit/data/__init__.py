"""Rows in, rows out: reading preference files (JSONL, gzip, Parquet), their formats, the per-row checks, the
validate stage's job and the split by prompt. No tokenizer and no torch here.

May import: the ground floor (rewardkit.errors, io, cli, config, params, text) only.
"""

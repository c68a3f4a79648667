"""The token store: a split's pairs tokenized once, memory-mapped by the train and evaluate stages (and by every
DDP rank of a node, which share the page cache) instead of rows and Python lists of ids.

A store is a directory written atomically:
- ids.bin: every sequence's token ids as flat int32 (pair i: sequence 2i chosen, 2i+1 rejected);
- offsets.npy: int64 (2n + 1,): sequence s is ids[offsets[s]:offsets[s + 1]];
- segments.npy: int32 (2n,): where each sequence's response starts (its token_type_ids turn 1);
- pairs.parquet: one row per pair: margin, the split file's row number, and id, source, subset and the answers'
  lengths in characters (what evaluation breaks down by);
- store.json: counts and what made it (tokenizer, max_length, truncation policy, input template).
A pair costs 4 bytes a token on disk; in RAM only the pages a batch reads, plus 24 bytes a pair of offsets and
segments.
"""
from __future__ import annotations

import json
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from rewardkit.errors import UserError
from rewardkit.io import atomic_path

META_COLUMNS = ("id", "source", "subset")


class StoreWriter:
    """Append encoded pairs chunk by chunk; `close(meta)` writes the store. Use as a context manager."""

    def __init__(self, directory: Path):
        self._target = atomic_path(directory, is_dir=True)
        self.dir = self._target.__enter__()
        self._ids = open(self.dir / "ids.bin", "wb")
        self._offsets, self._segments, self._pairs = [np.zeros(1, np.int64)], [], []
        self._end = 0

    def add(self, chosen: list[list[int]], rejected: list[list[int]], chosen_segments: list[int],
            rejected_segments: list[int], pairs: dict[str, list]) -> None:
        """Append pairs: their sequences, response starts, and per-pair columns (margin, row, id, ...)."""
        sequences = [s for pair in zip(chosen, rejected) for s in pair]
        if not sequences:
            return
        lengths = np.fromiter(map(len, sequences), np.int64, len(sequences))
        flat = np.fromiter(chain.from_iterable(sequences), np.int32, int(lengths.sum()))
        self._ids.write(flat.tobytes())
        self._offsets.append(self._end + np.cumsum(lengths))
        self._end += int(lengths.sum())
        self._segments.append(np.array([s for pair in zip(chosen_segments, rejected_segments) for s in pair],
                                       np.int32))
        self._pairs.append(pd.DataFrame(pairs))

    def close(self, meta: dict) -> dict:
        self._ids.close()
        offsets = np.concatenate(self._offsets)
        np.save(self.dir / "offsets.npy", offsets)
        np.save(self.dir / "segments.npy", np.concatenate(self._segments) if self._segments else np.zeros(0, np.int32))
        frame = pd.concat(self._pairs, ignore_index=True) if self._pairs else pd.DataFrame({"margin": []})
        frame.to_parquet(self.dir / "pairs.parquet", index=False)
        meta = {**meta, "pairs": len(frame), "tokens": int(offsets[-1])}
        (self.dir / "store.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        self._target.__exit__(None, None, None)
        return meta

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:  # an error or Ctrl-C mid-way: nothing half-written is left
            self._ids.close()
            self._target.__exit__(kind, error, trace)


class TokenStore:
    """A store opened for reading: the same interface as `encoding.TrainingPairs` (`lengths`, `margin`,
    `sequences`), over memory-mapped arrays."""

    def __init__(self, directory: Path, segment_ids: bool | None = None, use_margin: bool = True):
        self.dir, self.use_margin = Path(directory), use_margin
        try:
            self.meta = json.loads((self.dir / "store.json").read_text(encoding="utf-8"))
            self.offsets = np.load(self.dir / "offsets.npy", mmap_mode="r")
            self.segments_array = np.load(self.dir / "segments.npy", mmap_mode="r")
            self.ids = np.memmap(self.dir / "ids.bin", np.int32, "r") if self.offsets[-1] else np.zeros(0, np.int32)
        except (OSError, ValueError) as e:
            raise UserError(f"token store {self.dir} is missing or damaged ({e}); rebuild it with "
                            "`dvc repro tokenize` (or restore it with `dvc checkout`)") from None
        self.segment_ids = self.meta["segment_ids"] if segment_ids is None else segment_ids
        self._margin = None

    def __len__(self) -> int:
        return (len(self.offsets) - 1) // 2

    def sequence_lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def lengths(self) -> np.ndarray:
        """Per pair, the longer of its two sequences (what length grouping sorts by)."""
        per_sequence = self.sequence_lengths()
        return np.maximum(per_sequence[0::2], per_sequence[1::2])

    def columns(self, *names: str) -> pd.DataFrame:
        return pd.read_parquet(self.dir / "pairs.parquet", columns=list(names))

    @property
    def margin(self) -> np.ndarray:
        """Per pair, its margin (0 where it has none, and everywhere without use_margin)."""
        if self._margin is None:
            with np.errstate(over="ignore"):  # a margin beyond float32 becomes inf, and training stops on it
                margin = self.columns("margin")["margin"].fillna(0.0).to_numpy(np.float64).astype(np.float32)
            self._margin = margin if self.use_margin else np.zeros_like(margin)
        return self._margin

    def sequence(self, s: int) -> np.ndarray:
        return self.ids[self.offsets[s]:self.offsets[s + 1]]

    def sequences(self, indices) -> tuple[list[np.ndarray], list[int] | None]:
        """The chosen then the rejected sequences of the pairs at `indices`, and their segment starts."""
        order = [2 * int(j) for j in indices] + [2 * int(j) + 1 for j in indices]
        ids = [self.sequence(s) for s in order]
        return ids, ([int(self.segments_array[s]) for s in order] if self.segment_ids else None)


class PairSubset:
    """Some of a store's pairs (the training pairs left after a validation slice is carved out), with the store's
    reading interface; pair i of the subset is pair `indices[i]` of the store."""

    def __init__(self, store: TokenStore, indices: np.ndarray):
        self.store, self.indices = store, np.asarray(indices)
        self.meta = store.meta

    def __len__(self) -> int:
        return len(self.indices)

    def lengths(self) -> np.ndarray:
        return self.store.lengths()[self.indices]

    @property
    def margin(self) -> np.ndarray:
        return self.store.margin[self.indices]

    def sequences(self, indices) -> tuple[list[np.ndarray], list[int] | None]:
        return self.store.sequences(self.indices[np.asarray(indices, dtype=np.int64)])

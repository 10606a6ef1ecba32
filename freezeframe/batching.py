"""Examples as tensors, and batches padded only as far as they need (length-aware)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids", "hidden")
"""Per-example tensors whose first dimension is the token position (padded in a batch)."""


@dataclass
class ExampleSet:
    """Model inputs of each example (dicts of tensors at their real length) with class indices.

    Args:
        examples: one dict per example, e.g. ``{"input_ids": LongTensor[len]}``.
        labels: class index per example, or ``None`` for unlabelled texts.
        pad_id: value that pads ``input_ids``.
        pad_to: pad every batch to this length (the seed's fixed shapes) instead of its longest.
        lengths: each example's token length where its tensors no longer hold it (a cached sentence vector),
            so that training batches are grouped as the texts' would be, with or without the cache.
    """

    examples: list[dict[str, torch.Tensor]]
    labels: list[int] | None = None
    pad_id: int = 0
    pad_to: int | None = None
    length_jitter: float = 6.0
    lengths: list[int] | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def length(self, index: int) -> int:
        if self.lengths is not None:
            return self.lengths[index]
        example = self.examples[index]
        for key in SEQUENCE_KEYS:
            if key in example:
                return int(example[key].shape[0])
        return 1

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Stack the examples at ``indices`` into one batch, padding sequences with a zero mask."""
        chosen = [self.examples[i] for i in indices]
        width = self.pad_to or max(self.length(i) for i in indices)
        batch: dict[str, torch.Tensor] = {}
        for key in chosen[0]:
            if key in SEQUENCE_KEYS:
                fill = self.pad_id if key == "input_ids" else 0
                first = chosen[0][key]
                out = first.new_full((len(chosen), width, *first.shape[1:]), fill)
                for row, example in enumerate(chosen):
                    length = min(example[key].shape[0], width)
                    out[row, :length] = example[key][:length]
                batch[key] = out
            else:
                batch[key] = torch.stack([example[key] for example in chosen])
        if self.labels is not None:
            batch["labels"] = torch.tensor([self.labels[i] for i in indices], dtype=torch.long)
        return batch

    def training_batches(self, batch_size: int, rng: random.Random) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled batches of similar length.

        Examples are sorted by their length plus a random jitter of up to ``length_jitter`` tokens (default 6),
        cut into batches, and the batches shuffled: padding stays small (about 90% of the tokens
        are real on train.csv, against 60% for plain shuffling) while the composition of the
        batches still changes from epoch to epoch.
        """
        order = sorted(range(len(self)), key=lambda i: self.length(i) + rng.uniform(0, self.length_jitter))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(batches)
        for indices in batches:
            yield self.collate(indices)

    def ordered_batches(self, batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Batches sorted by length (least padding), each with the example indices it holds."""
        order = sorted(range(len(self)), key=self.length)
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            yield indices, self.collate(indices)


def token_examples(token_ids: list[list[int]]) -> list[dict[str, torch.Tensor]]:
    """Examples holding token ids and an all-ones attention mask at their real length."""
    return [
        {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.ones(len(ids), dtype=torch.long)}
        for ids in token_ids
    ]

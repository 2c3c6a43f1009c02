"""Words to numbers for text to product (issue 26, notebook 10): a catalogue's caption vocabulary and its tokenizer.

The large text-to-image models read a prompt through a learned sub-word tokenizer (byte-pair encoding) with tens of
thousands of entries. The colour catalogue's captions use a few dozen words ("a red striped dress", "a pair of blue
trousers"), so a word-level tokenizer needs nothing learned: a prompt is split into lower-case words, each word is
replaced by its index in the vocabulary, and the row ends with an end token and is padded to a fixed length.

* Index 0 is padding: every encoder ignores it (a mask says where the prompt's tokens are).
* Index 1 is the end token. A transformer text encoder reads the prompt's summary from it, as CLIP reads its
  end-of-text token (Radford et al. 2021): by attention it has seen every word before it.
* A word outside the vocabulary is refused in one line that lists the vocabulary: a model can say nothing about a
  word it never saw, and silently dropping the word would answer another prompt than the one asked.

Chapter 10 (notebooks/10_text_to_product.ipynb).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

PAD, END = "<pad>", "<end>"
_WORD = re.compile(r"[a-z0-9]+(?:[-/][a-z0-9]+)*")  # letters and digits, joined by hyphens or slashes: "t-shirt"


class UnknownWord(ValueError):
    """A prompt used a word that the vocabulary does not hold (the message lists the vocabulary). Chapter 10."""


def split(text: str) -> list[str]:
    """The words of ``text``, lower-cased, punctuation dropped: ``split("A red, striped T-shirt!") == ["a", "red",
    "striped", "t-shirt"]``. Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Tokenizer:
    """Word-level tokenizer: ``words[i]`` is token ``i`` (``words[0]`` padding, ``words[1]`` the end token) and every
    prompt becomes ``length`` tokens. Frozen and made of plain values, so a model's config records it whole.

    Chapter 10 (notebooks/10_text_to_product.ipynb).
    """

    words: tuple[str, ...]
    length: int  # tokens per prompt, the end token included

    def __post_init__(self) -> None:
        if self.words[:2] != (PAD, END) or len(set(self.words)) != len(self.words):
            raise ValueError(f"a vocabulary starts with {PAD!r} and {END!r} and holds each word once")
        if self.length < 2:
            raise ValueError("a prompt needs room for at least one word and the end token")

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Tokenizer:
        """The tokenizer of every word of ``texts`` (sorted: the same texts give the same tokens), with room for the
        longest of them."""
        rows = [split(t) for t in texts]
        if not rows:
            raise ValueError("a vocabulary needs at least one text")
        return cls((PAD, END, *sorted({w for row in rows for w in row})), max(map(len, rows)) + 1)

    @property
    def size(self) -> int:
        """Tokens in the vocabulary, padding and end included."""
        return len(self.words)

    def vocabulary(self) -> str:
        """The words a prompt may use, as one line."""
        return ", ".join(self.words[2:])

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """int64 N x ``length``: each prompt's word indices, then the end token, then padding. ``UnknownWord`` for a
        word outside the vocabulary, ``ValueError`` for a prompt longer than ``length - 1`` words."""
        index = {w: i for i, w in enumerate(self.words)}
        out = torch.zeros(len(prompts), self.length, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            words = split(prompt)
            unknown = [w for w in words if w not in index]
            if unknown:
                raise UnknownWord(f"{unknown[0]!r} is not in the vocabulary of {self.size - 2} words: "
                                  f"{self.vocabulary()}")
            if len(words) >= self.length:
                raise ValueError(f"a prompt has at most {self.length - 1} words, not {len(words)}: {prompt!r}")
            out[row, : len(words) + 1] = torch.tensor([*(index[w] for w in words), 1])
        return out

    def decode(self, tokens: Tensor) -> list[str]:
        """The prompts of ``tokens`` (N x length), the words up to each end token."""
        rows = []
        for row in tokens.tolist():
            words = row[: row.index(1)] if 1 in row else row
            rows.append(" ".join(self.words[i] for i in words if i > 1))
        return rows


def mask(tokens: Tensor) -> Tensor:
    """bool N x length: True at every word and the end token, False at padding (what attention may look at).
    Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    return tokens != 0


def end_positions(tokens: Tensor) -> Tensor:
    """int64 N: the position of each row's end token (where a transformer text encoder reads the prompt's summary).
    Chapter 10 (notebooks/10_text_to_product.ipynb)."""
    return (tokens == 1).int().argmax(1)

"""The word-level tokenizer of text to product (issue 26): every caption of the colour catalogue is encoded and decoded
back, a word outside the vocabulary is refused in one line that lists the vocabulary."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from prodlab import text
from prodlab.datasets import colour

CAPTIONS = [colour.caption(c, a, p) for c, (a, _), p in
            itertools.product(colour.NOUNS, colour.COLOURS, colour.PATTERNS)]


def test_split_lower_cases_keeps_hyphenated_words_and_drops_punctuation():
    assert text.split("A red, striped T-shirt!") == ["a", "red", "striped", "t-shirt"]
    assert text.split("  ") == []


def test_every_caption_round_trips_and_the_vocabulary_is_sorted_and_complete():
    tok = text.Tokenizer.from_texts(CAPTIONS)
    assert tok.words[:2] == (text.PAD, text.END) and list(tok.words[2:]) == sorted(tok.words[2:])
    assert set(tok.words[2:]) == {w for c in CAPTIONS for w in c.split()}
    assert tok.length == max(len(c.split()) for c in CAPTIONS) + 1
    tokens = tok.encode(CAPTIONS)
    assert tokens.shape == (len(CAPTIONS), tok.length) and tokens.dtype == torch.long
    assert tok.decode(tokens) == CAPTIONS
    assert (text.end_positions(tokens) == torch.tensor([len(c.split()) for c in CAPTIONS])).all()
    assert (text.mask(tokens).sum(1) == text.end_positions(tokens) + 1).all()  # the words and the end token
    assert text.Tokenizer.from_texts(reversed(CAPTIONS)) == tok  # the same words, the same tokens


def test_a_word_outside_the_vocabulary_is_refused_in_one_line_that_lists_it():
    tok = text.Tokenizer.from_texts(CAPTIONS)
    with pytest.raises(text.UnknownWord) as caught:
        tok.encode(["a red dress", "a teal scarf"])
    message = str(caught.value)
    assert "'teal'" in message and "\n" not in message and tok.vocabulary() in message
    with pytest.raises(ValueError, match="at most"):
        tok.encode([" ".join(["red"] * tok.length)])
    assert tok.encode([""]).tolist() == [[1] + [0] * (tok.length - 1)]  # no words: the end token alone


def test_the_tokenizer_is_plain_data_and_checks_its_vocabulary():
    tok = text.Tokenizer.from_texts(["a red bag"])
    stored = json.loads(json.dumps({"words": tok.words, "length": tok.length}))  # as a checkpoint's JSON holds it
    assert text.Tokenizer(tuple(stored["words"]), stored["length"]) == tok
    with pytest.raises(ValueError, match="starts with"):
        text.Tokenizer(("a", "b"), 3)
    with pytest.raises(ValueError, match="once"):
        text.Tokenizer((text.PAD, text.END, "a", "a"), 3)

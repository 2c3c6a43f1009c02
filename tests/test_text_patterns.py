"""Chapter 10's analysis of the generator's weakest attribute (issue 26): the confusion table must count as
scikit-learn does, and the two readers of a pattern (the ruler, CLIP zero-shot) must read real photos' patterns."""

from __future__ import annotations

import torch
from sklearn.metrics import confusion_matrix

from prodlab import checkpoints, data, ruler
from prodlab.chapters import ch10_text
from prodlab.datasets import colour
from prodlab.training import clip as clip_training


def test_the_confusion_table_counts_as_scikit_learn_and_shows_shares():
    g = torch.Generator().manual_seed(0)
    asked, read = torch.randint(0, 4, (300,), generator=g), torch.randint(0, 4, (300,), generator=g)
    table = ch10_text.confusion(asked, read, 4)
    assert table.tolist() == confusion_matrix(asked, read, labels=range(4)).tolist()
    text = ch10_text.confusion_markdown({"confusion": [[3, 1, 0, 0], [0, 4, 0, 0], [2, 0, 2, 0], [0, 0, 0, 0]]})
    assert "| dots | 0.50 | 0.00 | **0.50** | 0.00 | 4 |" in text
    assert "| checks | 0.00 | 0.00 | 0.00 | **0.00** | 0 |" in text


def test_both_readers_read_the_patterns_of_real_photos():
    labels = clip_training.catalogue_labels(colour.NAME, "test")[:200]
    photos = data.to_float(data.load("test", dataset=colour.NAME)[0][:200])
    col = ch10_text.pattern_column(data.spec(colour.NAME).attribute_names)
    clip = checkpoints.load("clip", kind="clip")
    readers = (ch10_text.ruler_patterns(ruler.load(dataset=colour.NAME), photos), ch10_text.clip_patterns(clip, photos))
    for read in readers:
        assert float((read == labels[:, col]).float().mean()) > 0.9

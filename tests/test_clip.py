"""CLIP in miniature (issue 26): the symmetric InfoNCE loss against torch's cross-entropy written out, shared captions
as positives, the text encoders' use of padding and word order, the logit scale's bound."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prodlab import data, text
from prodlab.models import clip

TOKENIZER = text.Tokenizer.from_texts(["a red striped dress", "a blue bag", "a pair of green dotted trousers"])


def _config(**fields) -> clip.CLIPConfig:
    return clip.CLIPConfig(data.spec(), TOKENIZER, width=16, heads=2, image_widths=(8, 16), embed_dim=8, **fields)


def test_with_distinct_captions_the_loss_is_clips_symmetric_cross_entropy():
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6)
    reference = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(clip.clip_loss(logits), reference)
    assert torch.allclose(clip.clip_loss(logits, torch.eye(6, dtype=torch.bool)), reference)


def test_pairs_with_the_same_caption_are_all_positives():
    logits = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    captions = torch.tensor([0, 1, 0, 2])  # pairs 0 and 2 share a caption
    same = captions[:, None] == captions[None, :]
    targets = torch.tensor([[0.5, 0, 0.5, 0], [0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 0, 0, 1]])
    images_to_texts = -(targets * logits.log_softmax(1)).sum(1).mean()
    texts_to_images = -(targets * logits.T.log_softmax(1)).sum(1).mean()
    by_hand = (images_to_texts + texts_to_images) / 2
    assert torch.allclose(clip.clip_loss(logits, same), by_hand)
    swapped = logits[[2, 1, 0, 3]]  # the two images of one caption exchanged: nothing to tell them apart by
    assert torch.allclose(clip.clip_loss(swapped, same), clip.clip_loss(logits, same))


def test_the_text_encoders_ignore_padding_and_only_the_transformer_reads_word_order():
    torch.manual_seed(0)
    prompts = ["a red striped dress", "a dress striped red"]
    tokens = TOKENIZER.encode(prompts)
    for kind in clip.TEXT_ENCODERS:
        model = clip.CLIP(_config(text_encoder=kind)).eval()
        before = model.embed_texts(tokens)
        with torch.no_grad():
            model.text_encoder.words.weight[0] = 5.0  # the padding's embedding: never read
        after = model.embed_texts(tokens)
        assert torch.allclose(before, after, atol=1e-6) and before.shape == (2, 8)
        assert torch.allclose(before.norm(dim=1), torch.ones(2))
        assert torch.allclose(before[0], before[1], atol=1e-6) == (kind == "bag")  # same words, another order


def test_the_logits_are_scaled_cosines_and_the_scale_stops_at_100():
    torch.manual_seed(0)
    model = clip.CLIP(_config()).eval()
    images = torch.rand(3, *data.spec().shape)
    tokens = TOKENIZER.encode(["a blue bag", "a red striped dress", "a blue bag"])
    logits = model(images, tokens)
    assert math.isclose(model.scale.item(), 1 / 0.07, rel_tol=1e-5)
    assert torch.allclose(logits, model.scale * model.embed_images(images) @ model.embed_texts(tokens).T)
    assert torch.allclose(logits[:, 0], logits[:, 2])  # the same prompt, the same column
    with torch.no_grad():
        model.log_scale.fill_(10.0)
    assert math.isclose(model.scale.item(), clip.MAX_SCALE, rel_tol=1e-5)

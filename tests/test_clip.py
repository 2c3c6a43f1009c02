"""CLIP in miniature (issue 26): the symmetric InfoNCE loss against torch's cross-entropy written out, shared captions
as positives, the text encoders' use of padding and word order, the logit scale's bound."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from prodlab import data, text
from prodlab.datasets import colour
from prodlab.models import clip
from prodlab.training import clip as clip_training

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


# ---------------------------------------------------------------- training on the colour catalogue's words

SPEC = data.spec(colour.NAME)


def test_the_catalogue_tokenizer_knows_every_phrasing_and_a_shoppers_words():
    tok = clip_training.catalogue_tokenizer(SPEC)
    combos = clip_training.combinations(SPEC)
    assert len(combos) == SPEC.n_classes * 8 * 4 and combos.unique(dim=0).shape == combos.shape
    prompts = [p for row in combos.tolist() for p in clip_training.words_of(SPEC, row)]
    assert tok.decode(tok.encode(prompts)) == prompts
    assert {"t-shirt", "pants", "striped", "dotted"} <= set(tok.words)


def test_prompts_are_drawn_among_each_products_phrasings_from_the_generator():
    labels = torch.tensor([[0, 4, 0], [1, 0, 1], [3, 2, 2]] * 20)  # a top, trousers, a dress
    first = clip_training.draw_prompts(SPEC, labels, torch.Generator().manual_seed(0))
    assert first == clip_training.draw_prompts(SPEC, labels, torch.Generator().manual_seed(0))
    assert {p for p in first[::3]} == {"a blue top", "a blue t-shirt"}  # both words, over 20 draws
    assert all(p in clip_training.words_of(SPEC, row) for p, row in zip(first, labels.tolist(), strict=True))


def test_held_out_combinations_are_found_and_left_out_of_the_training_photos():
    labels = torch.tensor([[1, 3, 0], [1, 3, 2], [1, 4, 0], [8, 0, 1], [8, 0, 0], [3, 5, 1]])
    held = (("Trouser", "colour", "green"), ("Bag", "pattern", "stripes"))
    assert clip_training.held_out_mask(SPEC, labels, held).tolist() == [True, True, False, True, False, False]
    family = clip_training.CLIPFamily(clip.CLIPConfig(SPEC, clip_training.catalogue_tokenizer(SPEC)),
                                      clip_training.CLIPRecipe(held_out=held, train_limit=2000), colour.NAME, seed=0)
    images, kept = family.data()
    everything = clip_training.catalogue_labels(colour.NAME, "train")
    assert images.shape == (2000, *SPEC.shape) and not clip_training.held_out_mask(SPEC, kept, held).any()
    assert torch.equal(kept, everything[~clip_training.held_out_mask(SPEC, everything, held)][:2000])


def test_the_step_is_the_loss_of_the_similarity_matrix_then_one_update():
    torch.manual_seed(0)
    cfg = clip.CLIPConfig(SPEC, clip_training.catalogue_tokenizer(SPEC), width=16, heads=2, image_widths=(8, 16),
                          embed_dim=8)
    model = clip.CLIP(cfg)
    by_hand = copy.deepcopy(model)
    labels = torch.tensor([[0, 4, 0], [1, 0, 1], [0, 4, 0], [9, 7, 3]])
    images, tokens = torch.rand(4, *SPEC.shape), cfg.tokenizer.encode(["a blue top", "a pair of red dotted pants",
                                                                       "a blue t-shirt", "a white checked boot"])
    same = clip_training.same_product(labels)
    assert same.tolist()[0] == [True, False, True, False]  # a top and a t-shirt of one colour: the same product
    row = clip_training.clip_step(model, torch.optim.AdamW(model.parameters(), lr=1e-3), images, tokens, same)
    optimizer = torch.optim.AdamW(by_hand.parameters(), lr=1e-3)
    loss = clip.clip_loss(by_hand.scale * by_hand.embed_images(images) @ by_hand.embed_texts(tokens).T, same)
    loss.backward()
    optimizer.step()
    assert row["loss"] == pytest.approx(loss.item(), rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(model.parameters(), by_hand.parameters(), strict=True))


def test_a_model_that_knows_every_product_finds_and_reads_all_of_them(monkeypatch):
    """The measures' bookkeeping: embeddings that are the one-hot of each product's combination retrieve and read
    every product right, seen and held-out alike."""
    model = clip.CLIP(clip.CLIPConfig(SPEC, clip_training.catalogue_tokenizer(SPEC)))
    combos = clip_training.combinations(SPEC)
    index = {tuple(row): i for i, row in enumerate(combos.tolist())}
    test_labels = clip_training.catalogue_labels(colour.NAME, "test")
    one_hot = torch.eye(len(combos))
    monkeypatch.setattr(model, "encode_prompts", lambda prompts: one_hot)
    monkeypatch.setattr(model, "encode_images", lambda images: one_hot[[index[tuple(r)] for r in test_labels.tolist()]])
    assert clip_training.image_to_text(model, ks=(1,)) == {"class": 1.0, "colour": 1.0, "pattern": 1.0,
                                                           "recall_at_1": 1.0}
    assert torch.equal(clip_training.combination_index(SPEC, combos), torch.arange(len(combos)))
    found = clip_training.text_to_image(model, clip_training.CLIPRecipe().held_out, k=5)
    assert set(found) == {"seen", "held_out"}
    assert all(v == 1.0 for group in found.values() for v in group.values())


# ---------------------------------------------------------------- the command line: train, search by words


@pytest.mark.integration
def test_the_recipe_trains_end_to_end_through_the_command_line(tmp_path, monkeypatch):
    from prodlab import checkpoints, config
    from prodlab.cli import main

    monkeypatch.setenv("PRODLAB_QUICK", "1")
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    assert main(["train", "clip", "--set", "train_limit=512", "--set", "batch_size=64", "--out", str(tmp_path)]) == 0
    meta = checkpoints.read_meta("clip", tmp_path)
    assert meta["quick_mode"] and meta["dataset"] == colour.NAME
    measured = {"image_to_text_class", "text_to_image_seen_class_colour", "text_to_image_held_out_all"}
    assert measured <= set(meta["metrics"])
    model = checkpoints.load("clip", tmp_path)
    assert isinstance(model, clip.CLIP) and model.cfg.tokenizer == clip_training.catalogue_tokenizer(SPEC)


def _search(capsys, *argv: str) -> tuple[int, str, str]:
    from prodlab.cli import main

    status = main(["search", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_search_by_words_finds_the_products_a_prompt_describes(capsys):
    status, out, _ = _search(capsys, "--text", "a blue striped shirt", "--data", colour.NAME, "--k", "5", "--json")
    hits = json.loads(out)
    assert status == 0 and len(hits) == 5 and [h["score"] for h in hits] == sorted((h["score"] for h in hits),
                                                                                  reverse=True)
    assert all(h["colour"] == "blue" for h in hits) and sum(h["class"] == "Shirt" for h in hits) >= 3
    assert sum(h["pattern"] == "stripes" for h in hits) >= 3


@pytest.mark.parametrize(("argv", "message"), [
    (["--text", "a teal scarf", "--data", colour.NAME], "'teal' is not in the vocabulary"),
    (["--text", "a blue bag"], "knows the words of catalogue 'colour'"),
    (["photo.png", "--text", "a blue bag", "--data", colour.NAME], "one of the two"),
    (["--data", colour.NAME], "one of the two"),
])
def test_a_prompt_that_cannot_be_searched_gets_one_line(capsys, argv, message):
    status, out, err = _search(capsys, *argv)
    assert status == 1 and message in err and len(err.strip().splitlines()) == 1 and not out


def test_evaluate_refuses_a_model_that_draws_nothing_in_one_line(capsys):
    from prodlab.cli import main

    assert main(["evaluate", "clip"]) == 1
    err = capsys.readouterr().err
    assert "draws no images" in err and "clip.json" in err and len(err.strip().splitlines()) == 1

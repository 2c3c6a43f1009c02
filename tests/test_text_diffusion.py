"""Text to product (issue 26): the first stage's loss against torch's Gaussian KL, its step by hand; the denoiser's
cross-attention never reads padding and sums to one over the words; the empty prompt is prompt dropout's and
guidance's "no label"; a negative prompt takes its place in guidance; labels are asked for by their captions; the
prompt edits keep what they must."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from prodlab import data, diffusion, text
from prodlab.datasets import colour
from prodlab.edit import by_prompt
from prodlab.models import autoencoder as ae
from prodlab.models import text_diffusion as td
from prodlab.models import unet
from prodlab.models.clip import CLIPConfig
from prodlab.training import autoencoder as ae_training
from prodlab.training import clip as clip_training
from prodlab.training import text_diffusion as td_training

SPEC = data.spec(colour.NAME)


def _autoencoder() -> ae.Autoencoder:
    torch.manual_seed(0)
    return ae.Autoencoder(ae.AutoencoderConfig(SPEC, widths=(8, 16, 16), latent_channels=2)).eval()


def _model(**fields) -> td.TextDiffusion:
    """A small untrained model on the colour catalogue's words, its last layer drawn at random so that every input
    moves the prediction."""
    torch.manual_seed(0)
    words = CLIPConfig(SPEC, clip_training.catalogue_tokenizer(SPEC), width=16, heads=2, image_widths=(8, 16),
                       embed_dim=8)
    cfg = td.TextDiffusionConfig(_autoencoder().cfg, words, width=16, heads=2, steps=2, **fields)
    model = td.TextDiffusion(cfg)
    zeroed = (model.net.head[-1], *(c.attn.out_proj for c in model.net.cross),
              *(m.conv2 for m in model.net.modules() if isinstance(m, unet.ResBlock)))
    for p in (q for m in zeroed for q in m.parameters()):
        torch.nn.init.normal_(p, std=0.1)
    return model.eval()


# ---------------------------------------------------------------- the first stage


def test_the_autoencoder_refuses_sides_it_cannot_halve_and_says_its_latent_grid():
    cfg = ae.AutoencoderConfig(SPEC)
    assert cfg.latent_shape == (cfg.latent_channels, SPEC.height // 4, SPEC.width // 4) and cfg.factor == 4
    with pytest.raises(ValueError, match="divisible by 64"):
        ae.AutoencoderConfig(SPEC, widths=(8,) * 7)
    with pytest.raises(ValueError, match="at least two widths"):
        ae.AutoencoderConfig(SPEC, widths=(8,))


def test_the_first_stage_loss_is_the_mse_plus_the_weighted_kl_of_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x, recon = torch.rand(3, *SPEC.shape, generator=g), torch.rand(3, *SPEC.shape, generator=g)
    mean, logvar = torch.randn(3, 2, 8, 8, generator=g), torch.randn(3, 2, 8, 8, generator=g)
    kl = kl_divergence(Normal(mean, (logvar / 2).exp()), Normal(0.0, 1.0)).mean()
    assert torch.allclose(ae.reconstruction_loss(recon, x, mean, logvar, 0.3), F.mse_loss(recon, x) + 0.3 * kl)


def test_the_first_stage_step_is_one_draw_the_loss_and_one_update():
    model, x = _autoencoder().train(), torch.rand(4, *SPEC.shape, generator=torch.Generator().manual_seed(1))
    twin = copy.deepcopy(model)
    opt, opt_twin = (torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (model, twin))
    out = ae_training.autoencoder_step(model, opt, x, 1e-3, torch.Generator().manual_seed(2))
    recon, mean, logvar = twin(x, torch.Generator().manual_seed(2))
    loss = ae.reconstruction_loss(recon, x, mean, logvar, 1e-3)
    opt_twin.zero_grad()
    loss.backward()
    opt_twin.step()
    assert out["loss"] == pytest.approx(float(loss.detach()), rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters(), strict=True))


# ---------------------------------------------------------------- the denoiser and its words


def test_cross_attention_reads_the_words_and_the_end_token_never_the_padding():
    model = _model()
    tokens = model.cfg.tokenizer.encode(["a red dress", "a pair of green dotted trousers"])
    z, t = torch.randn(2, *model.cfg.first_stage.latent_shape), torch.tensor([0.3, 0.8])
    weights = model.cross_attention(z, t, tokens)
    assert weights.shape == (len(model.net.cross), 2, model.cfg.tokenizer.length,
                             *model.cfg.first_stage.latent_shape[1:])
    assert torch.allclose(weights.sum(2), torch.ones(()))
    assert float((weights * (tokens == 0)[None, :, :, None, None]).abs().max()) == 0.0
    # the coarse stages' maps are brought to the grid by repetition: the 2 x 2 middle is constant on 4 x 4 blocks
    middle = weights[2]
    assert torch.equal(middle, middle[..., ::4, ::4].repeat_interleave(4, -1).repeat_interleave(4, -2))
    # the prediction is that of the words and the end token alone: cutting the padding off changes nothing
    context, padding, summary = model.context(tokens[:1])
    words = ~padding[0]
    assert torch.allclose(model(z[:1], t[:1], tokens[:1]), model.net(z[:1], t[:1], context[:, words],
                                                                     padding[:, words], summary), atol=1e-6)


def test_the_denoiser_starts_as_chapter_08s_u_net_with_the_prompt_s_summary_in_its_embedding():
    """Cross-attention starts at zero: a fresh denoiser's prediction is the plain U-Net's levels for the time
    embedding plus the summary's projection, whatever the prompt's other tokens."""
    model = td.TextDiffusion(_model().cfg).eval()
    for m in (model.net.head[-1], *(m.conv2 for m in model.net.modules() if isinstance(m, unet.ResBlock))):
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.1)  # every input moves the prediction, but the cross-attention's
    z, t = torch.randn(1, *model.cfg.first_stage.latent_shape), torch.tensor([0.4])
    context, padding, summary = model.context(model.cfg.tokenizer.encode(["a red striped dress"]))
    emb = model.net.embedding(t, None) + model.net.text_proj(summary)
    assert torch.allclose(model.net(z, t, context, padding, summary), model.net.levels(z, emb), atol=1e-6)
    assert not torch.allclose(model.net.levels(z, emb), model.net.levels(z, model.net.embedding(t, None)))


def test_the_prompt_s_summary_is_the_text_encoder_s_own_for_either_encoder():
    """The transformer's summary is its end token; the bag of words' is the mean of the words (its end token's
    features are the same for every prompt, so reading them would tell the denoiser nothing)."""
    words = _model().cfg.text
    tokens = words.tokenizer.encode(["a red dress", "a blue striped bag"])
    for kind in ("transformer", "bag"):
        torch.manual_seed(0)
        model = td.TextDiffusion(dataclasses.replace(_model().cfg, text=dataclasses.replace(words, text_encoder=kind)))
        features, _, summary = model.context(tokens)
        assert not torch.allclose(summary[0], summary[1])
        assert torch.allclose(model.text_encoder.project(summary), model.text_encoder(tokens))
    # the bag's summary is the mean of the words, and its end token's features are the same in both prompts
    assert torch.allclose(summary, (features * (tokens > 1)[..., None]).sum(1) / (tokens > 1).sum(1, keepdim=True))
    end = text.end_positions(tokens)
    assert torch.allclose(features[0, end[0]], features[1, end[1]])


def test_a_latent_grid_the_u_net_cannot_halve_twice_is_refused():
    spec = dataclasses.replace(SPEC, height=24, width=24)  # a 6 x 6 latent grid
    first, words = ae.AutoencoderConfig(spec, widths=(8, 16, 16), latent_channels=2), _model().cfg.text
    with pytest.raises(ValueError, match="divisible by 4"):
        td.TextDiffusionConfig(first, dataclasses.replace(words, image=spec), width=16, heads=2)


def test_each_region_s_attention_shares_sum_to_one_and_every_word_has_a_role():
    from prodlab.chapters import ch10_text as ch10

    shares = ch10.attention_by_region(_model(), 3)
    assert set(shares) == {"product", "background"}
    assert all(sum(row.values()) == pytest.approx(1.0, abs=1e-5) for row in shares.values())
    roles = {ch10.word_role(w) for w in _model().cfg.tokenizer.words[1:]}  # every word but the padding
    assert roles == set(ch10.WORD_ROLES)
    assert [ch10.word_role(w) for w in ("an", "red", "dotted", "trousers", "<end>")] == [
        "article", "colour", "pattern", "product", "end"]


def test_a_batch_of_photos_gets_the_maps_each_photo_gets_alone():
    from prodlab.chapters import ch10_text as ch10

    model, photos = _model(), torch.rand(3, SPEC.channels, SPEC.height, SPEC.width)
    prompts = ["a red dress", "a green striped shirt", "a blue bag"]
    batch = ch10.word_attentions(model, photos, prompts)
    for photo, prompt, (words, maps) in zip(photos, prompts, batch, strict=True):
        alone_words, alone = ch10.word_attention(model, photo, prompt)
        assert words == alone_words == [*prompt.split(), "<end>"]
        torch.testing.assert_close(maps, alone, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(batch[0][1][0], batch[2][1][0])  # the photos and their words differ


def test_the_prompt_moves_the_prediction_and_the_empty_prompt_is_the_missing_one():
    model = _model()
    z, t = torch.randn(2, *model.cfg.first_stage.latent_shape), torch.tensor([0.5, 0.5])
    red, blue = (model.cfg.tokenizer.encode([p] * 2) for p in ("a red dress", "a blue dress"))
    assert not torch.allclose(model(z, t, red), model(z, t, blue))
    assert torch.equal(model.null_tokens(2), model.cfg.tokenizer.encode(["", ""]))
    assert torch.equal(model(z, t), model(z, t, model.null_tokens(2)))


def test_prompt_dropout_replaces_whole_prompts_by_the_empty_one():
    model = _model()
    tokens = model.cfg.tokenizer.encode(["a red dress", "a blue striped bag", "a pair of green trousers"])
    null = tuple(model.null_tokens(1)[0].tolist())
    seen: list[torch.Tensor] = []
    diffusion.diffusion_loss(lambda z, t, y: seen.append(y) or torch.zeros_like(z),
                             torch.zeros(3, *model.cfg.first_stage.latent_shape), tokens, "flow",
                             torch.Generator().manual_seed(0), label_dropout=0.999, null_label=null)
    assert torch.equal(seen[0], model.null_tokens(3))


def test_a_negative_prompt_takes_the_empty_prompts_place_in_guidance():
    model, w = _model(), 2.5
    z, t = torch.randn(1, *model.cfg.first_stage.latent_shape), torch.tensor([0.6])
    tok = model.cfg.tokenizer.encode(["a red dress"])
    neg = model.cfg.tokenizer.encode(["a blue dress"])
    guided = diffusion.predict(model, z, 0.6, tok, w, tuple(neg[0].tolist()))
    by_hand = model(z, t, neg) + w * (model(z, t, tok) - model(z, t, neg))
    assert torch.allclose(guided, by_hand, atol=1e-5)
    a, b = (model.draw(["a red dress"], torch.Generator().manual_seed(3), negative_prompt=n)
            for n in ("", "a blue dress"))
    assert a.shape == (1, *SPEC.shape) and not torch.allclose(a, b)


def test_labels_are_asked_for_by_their_captions():
    model = _model()
    labels = torch.tensor([[SPEC.class_names.index("Dress"), SPEC.values("colour").index("red"),
                            SPEC.values("pattern").index("stripes")]])
    assert model.captions(labels) == ["a red striped dress"]
    by_labels = model.sample(1, torch.Generator().manual_seed(4), labels=labels)
    assert torch.equal(by_labels, model.draw(["a red striped dress"], torch.Generator().manual_seed(4)))
    with pytest.raises(ValueError, match="expected integer labels"):
        model.sample(1, labels=torch.tensor([[99, 0, 0]]))
    with pytest.raises(Exception, match="'teal' is not in the vocabulary"):
        model.draw(["a teal dress"])


def test_inpainting_keeps_every_visible_pixel_and_fills_the_rest():
    model = _model()
    x = torch.rand(2, *SPEC.shape, generator=torch.Generator().manual_seed(5))
    missing = torch.zeros(2, SPEC.height, SPEC.width, dtype=torch.bool)
    missing[:, 8:20, 10:22] = True
    out = by_prompt.inpaint(model, x, missing, ["a red dress", "a blue bag"], steps=2)
    keep = ~missing[:, None].expand_as(x)
    assert torch.equal(out[keep], x[keep]) and not torch.allclose(out[~keep], x[~keep])
    known = by_prompt.latent_known(model, missing)
    assert known.shape == (2, 1, 8, 8) and known[0, 0, 2:5, 2:6].sum() == 0 and known.sum() == 2 * (64 - 12)


def test_sdedit_by_prompt_from_a_late_start_stays_near_the_first_stages_reconstruction():
    model = _model()
    x = data.to_float(data.load("test", dataset=colour.NAME)[0][:2])
    near = by_prompt.sdedit(model, x, ["a red dress", "a blue bag"], start=0.02, steps=1)
    far = by_prompt.sdedit(model, x, ["a red dress", "a blue bag"], start=0.9, steps=1)
    recon = model.to_images(model.to_latents(x))
    assert (near - recon).abs().mean() < 0.25 * (far - recon).abs().mean()


def test_the_training_set_leaves_the_held_out_combinations_out_and_tokenises_their_phrasings():
    model = _model()
    recipe = td_training.TextDiffusionRecipe(train_limit=3000)
    latents, labels, tokens = td_training.training_set(recipe, model.autoencoder, model.cfg.tokenizer, colour.NAME, 0)
    assert latents.shape == (3000, *model.cfg.first_stage.latent_shape) and len(labels) == len(tokens) == 3000
    assert not clip_training.held_out_mask(SPEC, labels, recipe.held_out).any()
    words = model.cfg.tokenizer.decode(tokens)
    assert all(w in clip_training.words_of(SPEC, row) for w, row in zip(words, labels.tolist(), strict=True))
    assert recipe.held_out == clip_training.CLIPRecipe().held_out


# ---------------------------------------------------------------- the command line: train, sample by words


@pytest.mark.integration
def test_the_model_trains_measures_and_draws_from_a_prompt_through_the_command_line(tmp_path, monkeypatch, capsys):
    import numpy as np

    from prodlab import checkpoints, config
    from prodlab.cli import main

    monkeypatch.setenv("PRODLAB_QUICK", "1")
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    assert main(["train", "text-diffusion", "--set", "train_limit=256", "--out", str(tmp_path)]) == 0
    meta = checkpoints.read_meta("text-diffusion", tmp_path)
    assert meta["quick_mode"] and meta["recipe"]["fields"]["held_out"] == [list(r) for r in
                                                                          clip_training.CLIPRecipe().held_out]
    assert set(meta["metrics"]["attributes"]) == {"seen", "held_out"}
    assert {"clip_score", "clip_score_real", "fid", "recall", "ms_per_image"} <= set(meta["metrics"])
    assert [row["guidance"] for row in meta["guidance_sweep"]] == list(td_training.GUIDANCE_SCALES[:2])
    out = tmp_path / "x.npz"
    argv = ["sample", "text-diffusion", "--checkpoint-dir", str(tmp_path), "--n", "3", "--out", str(out)]
    assert main([*argv, "--prompt", "a red dotted dress", "--negative-prompt", "a blue dress"]) == 0
    with np.load(out) as saved:
        assert saved["images"].shape == (3, SPEC.height, SPEC.width, SPEC.channels)
        assert str(saved["prompt"]) == "a red dotted dress" and str(saved["negative_prompt"]) == "a blue dress"
    capsys.readouterr()
    assert main([*argv, "--prompt", "a teal dress"]) == 1
    err = capsys.readouterr().err
    assert "'teal' is not in the vocabulary" in err and "sneaker" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["sample", "cdcgan", "--prompt", "a red dress"], "reads no prompts"),
    (["sample", "cdcgan", "--negative-prompt", "a red dress"], "goes with --prompt"),
])
def test_a_prompt_to_a_model_that_reads_none_gets_one_line(tmp_path, capsys, argv, message):
    from prodlab.cli import main

    assert main([*argv, "--n", "2", "--out", str(tmp_path / "x.npz")]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1

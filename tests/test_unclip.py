"""unCLIP's chain on a tiny CLIP: the embedded scenes agree with CLIP called directly, the
decoder learns from scenes and their image embeddings, each prior returns what its definition
says (the diffusion prior's two samples reranked by brute force), and load_unclip trains once,
then loads the same models."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from minigen.data.shapes import ShapesWorld
from minigen.diffusion.sampling import SamplerOptions, ddim_sample
from minigen.models import clip
from minigen.nn.embeddings import TokenStates
from minigen.pipelines import unclip

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_CLIP = clip.CLIPRecipe(
    steps=2,
    batch_size=4,
    warmup_steps=1,
    vocabulary_size=600,
    width=32,
    embed_dim=32,
)
TINY = unclip.UnCLIPRecipe(
    decoder_steps=2,
    decoder_batch=4,
    decoder_channels=8,
    decoder_tokens=2,
    pairs=32,
    prior_steps=3,
    prior_batch=8,
    prior_width=32,
    prior_layers=1,
    ar_dims=4,
    ar_buckets=4,
)
WORLD = ShapesWorld(max_objects=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny unCLIP trained in a fresh cache, and that cache's folder."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINIGEN_CACHE", str(cache))
        model = unclip.load_unclip(
            TINY, WORLD, TINY_CLIP, device="cpu", progress=False
        )
    return model, cache


def test_embedded_scenes_are_clip_called_on_each_scene_and_caption(trained):
    model, _ = trained
    pairs = unclip.embed_scenes(model.clip, model.tokenizer, WORLD, 6, batch_size=4)
    scenes = WORLD.scenes(6)
    assert pairs.texts[0::2] == [
        t for i, t in enumerate(scenes_captions(scenes, "en")) if i % 2 == 0
    ]
    assert pairs.texts[1::2] == [
        t for i, t in enumerate(scenes_captions(scenes, "zh")) if i % 2 == 1
    ]
    with torch.no_grad():
        image = model.clip.encode_image(scenes.images)
        text, cond = unclip.encode_captions(
            model.clip, model.tokenizer, pairs.texts
        )
    torch.testing.assert_close(pairs.image, image)
    torch.testing.assert_close(pairs.text, text)
    # the stored condition is the one computed from the captions, padding trimmed
    stored = pairs.condition(torch.arange(6))
    assert torch.equal(stored.mask, cond.mask)
    torch.testing.assert_close(stored.states[stored.mask], cond.states[cond.mask])


def scenes_captions(scenes, language):
    from minigen.data import captions

    draws = WORLD.phrasing_draws(len(scenes))
    return captions.captions(WORLD, scenes, language, draws)


def test_decoder_batches_are_scenes_in_model_range_and_their_image_embeddings(
    trained,
):
    model, _ = trained
    images, embeddings = unclip.decoder_batches(model.clip, WORLD, 3)(2)
    scenes = WORLD.scenes(range(6, 9))
    torch.testing.assert_close(images, 2 * scenes.images - 1)
    unit = model.clip.encode_image(scenes.images)  # (3, 32), unit rows
    torch.testing.assert_close(embeddings, unit * 32**0.5)  # scaled by sqrt(E)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.full((3,), 32**0.5))
    decoder = unclip.build_decoder(TINY, 32, 32)
    assert decoder.cond_dim == 32 and decoder.cond_tokens == TINY.decoder_tokens
    assert decoder.coordinates == TINY.decoder_coordinates


def test_decode_reads_the_embedding_as_decoder_batches_give_it(
    trained, monkeypatch
):
    model, _ = trained
    seen = []
    forward = model.decoder.forward
    monkeypatch.setattr(
        model.decoder,
        "forward",
        lambda x, t, cond=None: seen.append(cond) or forward(x, t, cond),
    )
    unit = F.normalize(torch.randn(2, 32), dim=-1)
    model.decode(unit, guidance=None, steps=1)
    torch.testing.assert_close(seen[0], unit * 32**0.5)


def test_each_prior_returns_what_it_says(trained):
    model, _ = trained
    texts = ["a small red circle at the top left", "一个大的蓝色正方形在正中间"]
    text, cond = unclip.encode_captions(model.clip, model.tokenizer, texts)
    none = model.prior_embeddings(texts, "none")
    torch.testing.assert_close(none, text)
    torch.testing.assert_close(
        model.prior_embeddings(texts, "mlp"),
        F.normalize(model.mlp_prior(text), dim=-1),
    )
    generator = torch.Generator().manual_seed(3)
    codes = model.ar_prior.sample(text, generator)
    torch.testing.assert_close(
        model.prior_embeddings(texts, "ar", seed=3),
        F.normalize(model.quantizer.decode(codes), dim=-1),
    )
    # the diffusion prior: two DDIM samples from one generator, the better dot kept
    generator = torch.Generator().manual_seed(4)
    options = SamplerOptions(objective="x0", cond=cond)
    samples = torch.stack(
        [
            ddim_sample(
                model.diffusion_prior,
                model.prior_schedule,
                (2, 32),
                5,
                options=options,
                generator=generator,
            )
            for _ in range(2)
        ]
    )
    scores = (samples * text).sum(-1)  # (2, B)
    expected = torch.stack([samples[scores[:, b].argmax(), b] for b in range(2)])
    torch.testing.assert_close(
        model.prior_embeddings(texts, "diffusion", candidates=2, steps=5, seed=4),
        F.normalize(expected, dim=-1),
    )
    for name in unclip.PRIORS:
        norms = model.prior_embeddings(texts, name, steps=3).norm(dim=-1)
        torch.testing.assert_close(norms, torch.ones(2))
    with pytest.raises(ValueError, match="prior"):
        model.prior_embeddings(texts, "dalle")


def test_decode_is_seeded_guided_and_in_the_unit_range(trained):
    model, _ = trained
    embeddings = F.normalize(
        torch.randn(2, 32, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    first = model.decode(embeddings, guidance=3.0, steps=3, seed=1)
    assert first.shape == (2, 3, 32, 32) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(
        model.decode(embeddings, guidance=3.0, steps=3, seed=1), first
    )
    assert not torch.equal(
        model.decode(embeddings, guidance=None, steps=3, seed=1), first
    )
    images = model.generate(["a small red circle at the top left"], steps=2)
    assert images.shape == (1, 3, 32, 32)


def test_load_unclip_trains_once_then_loads_the_same_models(trained, monkeypatch):
    model, cache = trained
    (saved,) = cache.glob("unclip-2steps-*.pt")
    monkeypatch.setenv("MINIGEN_CACHE", str(cache))
    for name in (
        "train_decoder",
        "train_diffusion_prior",
        "train_mlp_prior",
        "train_ar_prior",
    ):
        monkeypatch.setattr(
            unclip, name, lambda *a, **k: pytest.fail("trained again")
        )
    again = unclip.load_unclip(TINY, WORLD, TINY_CLIP, device="cpu")
    for name in unclip.MODELS:
        first, second = getattr(model, name), getattr(again, name)
        assert second.history.losses == first.history.losses, name
        for key, value in first.state_dict().items():
            assert torch.equal(second.state_dict()[key], value), (name, key)
    for key, value in model.quantizer.state_dict().items():
        assert torch.equal(again.quantizer.state_dict()[key], value), key
    assert len(model.decoder.history.losses) == 2
    assert len(model.diffusion_prior.history.losses) == 3
    other = dataclasses.replace(TINY, seed=1)
    with pytest.raises(ValueError, match="other settings"):
        unclip.load_unclip(other, WORLD, TINY_CLIP, path=saved, device="cpu")


def test_an_unwritable_cache_fails_before_unclip_training(
    trained, tmp_path, monkeypatch
):
    model, cache = trained
    monkeypatch.setenv("MINIGEN_CACHE", str(cache))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(
        unclip, "train_decoder", lambda *a, **k: pytest.fail("trained")
    )
    with pytest.raises(OSError, match="MINIGEN_CACHE"):
        unclip.load_unclip(
            dataclasses.replace(TINY, seed=2), WORLD, TINY_CLIP,
            path=blocker / "unclip.pt", device="cpu",
        )  # fmt: skip


def test_the_mlp_and_ar_priors_learn_a_fixed_mapping():
    torch.manual_seed(0)
    n, dim = 64, 8
    text = F.normalize(torch.randn(n, dim), dim=-1)
    image = F.normalize(text @ torch.randn(dim, dim), dim=-1)
    pairs = unclip.CaptionedEmbeddings(
        [""] * n,
        TokenStates(torch.zeros(n, 1, 4), torch.ones(n, 1, dtype=torch.bool)),
        text,
        image,
    )
    recipe = dataclasses.replace(
        TINY, pairs=n, prior_batch=n, prior_steps=200, prior_lr=3e-3
    )
    mlp, history = unclip.train_mlp_prior(pairs, recipe, progress=False)
    assert history.losses[-1] < 0.1 * history.losses[0]
    with torch.no_grad():
        assert F.cosine_similarity(mlp(text), image).mean() > 0.95
    ar, quantizer, history = unclip.train_ar_prior(pairs, recipe, progress=False)
    assert history.losses[0] > 0.9 * torch.log(torch.tensor(4.0))  # near chance
    assert history.losses[-1] < 0.5 * history.losses[0]
    assert quantizer.dims == 4 and quantizer.buckets == 4


def test_a_recipe_with_bad_settings_is_refused():
    with pytest.raises(ValueError, match="cond_dropout"):
        unclip.UnCLIPRecipe(cond_dropout=1.5)
    with pytest.raises(ValueError, match="prior_batch"):
        unclip.UnCLIPRecipe(pairs=10, prior_batch=20)
    with pytest.raises(TypeError, match="decoder_steps"):
        unclip.UnCLIPRecipe(decoder_steps=1.5)
    with pytest.raises(ValueError, match="prior_lr"):
        unclip.UnCLIPRecipe(prior_lr=0.0)
    with pytest.raises(ValueError, match="ar_buckets"):
        unclip.UnCLIPRecipe(ar_buckets=1)


def test_the_book_recipe_follows_the_profile(monkeypatch):
    monkeypatch.setenv("MINIGEN_PROFILE", "cpu")
    assert unclip.book_unclip_recipe() == unclip.UnCLIPRecipe()
    monkeypatch.setenv("MINIGEN_PROFILE", "smoke")
    assert unclip.book_unclip_recipe().decoder_steps < 10

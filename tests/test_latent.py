"""Tests for minigen.pipelines.latent on a tiny text encoder, U-Net and first stage: the scaled linear
betas, the model that reads token ids through the text encoder (frozen or trained with the U-Net), DDIM on
latents against its closed form at one step, the blended inpainting (the kept region exactly the known
latent), q_sample by hand, img2img and the whole chain against its parts, the latent masks by brute force,
the inpainting model (equal to the plain one when fresh) and its masks, short training runs and the
recipes' checks."""

import dataclasses

import pytest
import torch

from minigen.core.runtime import choose_precision
from minigen.data import captions
from minigen.data.shapes import ShapesWorld
from minigen.diffusion.sampling import SamplerOptions, ddim_timesteps
from minigen.models import clip as clip_models
from minigen.nn.transformer import SpatialTransformer
from minigen.pipelines import first_stage, latent
from minigen.tokenizers.bpe import BPETokenizer

pytestmark = pytest.mark.usefixtures(
    "one_thread"
)  # conftest's: tiny tensors, one thread

WORLD = ShapesWorld()
CONTEXT = clip_models.CAPTION_CONTEXT  # 40


def caption_corpus(n=200):
    labels, draws = (
        WORLD.sample_labels(n, "train"),
        WORLD.phrasing_draws(n, "train"),
    )
    return [
        text
        for language in captions.LANGUAGES
        for text in captions.captions(WORLD, labels, language, draws)
    ]


CORPUS = caption_corpus()
TOKENIZER = BPETokenizer.train(CORPUS, 700)
NULL = TOKENIZER([""], CONTEXT)  # (1, 40): start, end, zeros
RECIPE = latent.LatentRecipe(
    channels=16, steps=2, batch=4, scenes=8, inpaint_steps=2
)
PROMPTS = [
    CORPUS[0],
    CORPUS[len(CORPUS) // 2 + 1],
]  # an English and a Chinese caption


def text_encoder(seed=0, vocabulary=None):
    torch.manual_seed(seed)
    return clip_models.TextEncoder(
        vocabulary_size=len(TOKENIZER) if vocabulary is None else vocabulary,
        context_length=CONTEXT,
        width=16,
        layers=1,
        heads=2,
        embed_dim=16,
    )


def wake(model: torch.nn.Module, std: float = 0.3) -> None:
    """Random weights for the zero-initialised layers (every proj_out and the U-Net's output layer), so
    that the output depends on the input, the text included."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "proj_out" in name or name.startswith("unet.out."):
                torch.nn.init.normal_(parameter, std=std)


def tiny_model(text="frozen", seed=0, awake=True):
    encoder = text_encoder(seed)
    torch.manual_seed(seed + 1)
    model = latent.build_model(
        dataclasses.replace(RECIPE, text=text), encoder, NULL, 8
    )
    if awake:
        wake(model)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def autoencoder():
    torch.manual_seed(0)
    ae = first_stage.KLAutoencoder((8, 16)).eval()
    ae.scale.fill_(0.5)
    return ae


@pytest.fixture(scope="module")
def chain(model, autoencoder):
    return latent.LatentDiffusion(
        model, autoencoder, TOKENIZER, steps=3, guidance=2.0
    )


def tokens(prompts=PROMPTS):
    return TOKENIZER(list(prompts), CONTEXT)


def alpha_bar(t):
    """abar_t of the scaled linear betas, computed here in float64."""
    roots = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64)
    return torch.cumprod(1 - roots**2, 0)[t].item()


def options(prompts=PROMPTS, guidance=2.0):
    return SamplerOptions("v", tokens(prompts), guidance, clip=None)


# ----------------------------------------------------------------------------------
# The schedule and img2img's step count


def test_scaled_linear_schedule_is_a_square_of_evenly_spaced_roots():
    schedule = latent.scaled_linear_schedule()
    betas = schedule.betas
    assert len(betas) == 1000 and betas.dtype == torch.float64
    assert abs(betas[0].item() - 0.00085) < 1e-12
    assert abs(betas[-1].item() - 0.012) < 1e-12
    gaps = betas.sqrt().diff()
    expected = (0.012**0.5 - 0.00085**0.5) / 999
    torch.testing.assert_close(
        gaps, torch.full_like(gaps, expected), rtol=0, atol=1e-14
    )
    # not linear in beta: the middle beta lies below the middle of the two ends
    assert betas[len(betas) // 2] < (0.00085 + 0.012) / 2 - 1e-4
    torch.testing.assert_close(schedule.alpha_bar, torch.cumprod(1 - betas, 0))
    short = latent.scaled_linear_schedule(10)
    assert len(short.betas) == 10
    assert short.betas[0].item() == pytest.approx(0.00085, abs=1e-12)
    assert short.betas[-1].item() == pytest.approx(0.012, abs=1e-12)
    with pytest.raises(ValueError):
        latent.scaled_linear_schedule(0)


@pytest.mark.parametrize(
    "strength, steps, count",
    [
        (0.0, 25, 0),
        (1.0, 25, 25),
        (0.5, 25, 12),
        (0.75, 20, 15),
        (0.3, 10, 3),
        (0.99, 10, 9),
    ],
)
def test_img2img_steps_is_int_of_strength_times_steps(strength, steps, count):
    assert latent.img2img_steps(strength, steps) == count == int(strength * steps)


def test_img2img_steps_rejects_a_strength_outside_zero_one():
    for strength in (1.2, -0.1, float("nan")):
        with pytest.raises(ValueError):
            latent.img2img_steps(strength, 10)
    with pytest.raises(ValueError):
        latent.img2img_steps(0.5, 0)


# ----------------------------------------------------------------------------------
# The model


def test_build_model_is_a_text_unet_with_coordinates(model):
    unet = model.unet
    assert unet.text_dim == 16 and unet.in_channels == 4 and unet.image_size == 8
    assert unet.coordinates and unet.stem.weight.shape == (16, 4 + 2, 3, 3)
    assert unet.base_channels == RECIPE.channels
    spatial = [m for m in unet.modules() if isinstance(m, SpatialTransformer)]
    assert len(spatial) == 4  # level 1: 1 going down, 2 going up; 1 in the middle
    assert model.in_channels == 4 and model.image_size == 8
    assert torch.equal(model.null_tokens, NULL)


def test_the_model_reads_ids_through_the_text_encoder(model):
    x, t, ids = torch.randn(2, 4, 8, 8), torch.tensor([5, 900]), tokens()
    with torch.no_grad():
        out = model(x, t, ids)
        expected = model.unet(x, t, model.text_encoder.token_states(ids))
        other = model(x, t, ids.flip(0))
    assert out.shape == (2, 4, 8, 8)
    assert torch.equal(out, expected)
    assert (out - other).abs().max() > 1e-4  # the text matters


def test_null_cond_is_the_empty_caption(model):
    null = model.null_cond(3)
    assert null.shape == (3, CONTEXT) and null.dtype == torch.long
    assert torch.equal(null, NULL.expand(3, -1))
    assert null[0, 0] == TOKENIZER.start and null[0, 1] == TOKENIZER.end
    assert torch.count_nonzero(null[:, 2:]) == 0
    assert model.null_cond(2, "cpu").device.type == "cpu"


def test_a_frozen_text_encoder_gets_no_gradient():
    model = tiny_model("frozen")
    assert not model.train_text
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    model(
        torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), tokens()
    ).square().sum().backward()
    assert all(p.grad is None for p in model.text_encoder.parameters())
    assert model.unet.stem.weight.grad.abs().sum() > 0


def test_a_joint_text_encoder_trains_with_the_unet():
    model = tiny_model("joint")
    assert model.train_text
    assert all(p.requires_grad for p in model.text_encoder.parameters())
    model(
        torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), tokens()
    ).square().sum().backward()
    grad = model.text_encoder.token_embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.text_encoder.blocks[0].attention.to_q.weight.grad.abs().sum() > 0
    # under no_grad (sampling) the joint encoder builds no graph either
    with torch.no_grad():
        assert not model.text_states(tokens()).states.requires_grad


def test_build_model_with_a_small_vocabulary_and_null_tokens():
    """The brief's setup: vocabulary 50, NULL = [start, end, 0, ...] with the end token the largest id."""
    encoder = text_encoder(vocabulary=50)
    null = torch.zeros(1, CONTEXT, dtype=torch.long)
    null[0, :2] = torch.tensor([48, 49])
    model = latent.build_model(RECIPE, encoder, null, latent_side=8)
    assert torch.equal(model.null_cond(4), null.expand(4, -1))
    states = model.text_states(model.null_cond(4))
    assert states.states.shape == (4, 2, 16)  # cut after the end token
    assert states.mask.all()
    ids = torch.tensor([[48, 5, 7, 49] + [0] * 36])
    assert model(torch.randn(1, 4, 8, 8), torch.tensor([3]), ids).shape == (
        1,
        4,
        8,
        8,
    )


def test_text_encoder_for_copies_or_makes_a_fresh_encoder():
    encoder = text_encoder(seed=3)
    clip = clip_models.CLIP(torch.nn.Identity(), encoder)
    frozen = latent.text_encoder_for(RECIPE, clip)
    assert frozen is not encoder
    for (name, a), b in zip(
        frozen.state_dict().items(), encoder.state_dict().values()
    ):
        assert torch.equal(a, b), name
    joint_recipe = dataclasses.replace(RECIPE, text="joint")
    fresh = latent.text_encoder_for(joint_recipe, clip)
    again = latent.text_encoder_for(joint_recipe, clip)
    assert fresh.vocabulary_size == encoder.vocabulary_size
    assert fresh.context_length == encoder.context_length
    assert len(fresh.blocks) == len(encoder.blocks)
    assert fresh.blocks[0].attention.heads == encoder.blocks[0].attention.heads
    assert fresh.projection.out_features == encoder.projection.out_features
    shapes = {k: v.shape for k, v in encoder.state_dict().items()}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == shapes
    assert not torch.equal(
        fresh.token_embedding.weight, encoder.token_embedding.weight
    )
    assert torch.equal(
        fresh.token_embedding.weight, again.token_embedding.weight
    )  # seeded


# ----------------------------------------------------------------------------------
# Sampling: DDIM on latents, noising, blending


@pytest.mark.parametrize("t", [999, 400, 20])
def test_one_denoising_step_is_the_v_parameterisation_in_closed_form(model, t):
    """From t to the clean latent: x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v."""
    x = torch.randn(2, 4, 8, 8)
    steps = torch.full((2,), t)
    out = latent.denoise(model, x, [t], options(guidance=None))
    with torch.no_grad():
        v = model(x, steps, tokens())
    a = alpha_bar(t)
    torch.testing.assert_close(
        out, a**0.5 * x - (1 - a) ** 0.5 * v, rtol=1e-5, atol=1e-5
    )


def test_one_guided_step_extrapolates_from_the_empty_caption(model):
    t, w = 600, 2.5
    x = torch.randn(2, 4, 8, 8)
    steps = torch.full((2,), t)
    out = latent.denoise(model, x, [t], options(guidance=w))
    with torch.no_grad():
        v_text = model(x, steps, tokens())
        v_null = model(x, steps, model.null_cond(2))
    v = v_null + w * (v_text - v_null)
    a = alpha_bar(t)
    torch.testing.assert_close(
        out, a**0.5 * x - (1 - a) ** 0.5 * v, rtol=1e-5, atol=1e-5
    )


def test_blended_denoising_ends_exactly_on_the_known_latent_outside_the_mask(model):
    generator = torch.Generator().manual_seed(0)
    x, known = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, 2:5, 1:7] = 1
    mask[1, :, 4:, :] = 1
    times = ddim_timesteps(1000, 4)
    out = latent.denoise(model, x, times, options(), known, mask, generator)
    keep = (mask == 0).expand_as(known)
    assert torch.equal(out[keep], known[keep])
    redraw = ~keep
    assert (
        out[redraw] - known[redraw]
    ).abs().min() > 1e-6  # the model drew something else
    # all kept: the known latent itself; nothing kept: plain denoising, bit for bit
    zeros, ones = torch.zeros_like(mask), torch.ones_like(mask)
    assert torch.equal(
        latent.denoise(model, x, times, options(), known, zeros, generator), known
    )
    plain = latent.denoise(model, x, times, options())
    assert torch.equal(
        latent.denoise(model, x, times, options(), known, ones, generator), plain
    )
    assert not torch.equal(
        out[redraw], plain[redraw]
    )  # the kept region steered the rest


def test_noised_is_q_sample_of_the_scaled_linear_schedule():
    known = torch.randn(3, 4, 8, 8)
    assert latent.noised(known, -1, None) is known
    for t in (0, 250, 999):
        out = latent.noised(known, t, torch.Generator().manual_seed(t))
        noise = torch.randn(known.shape, generator=torch.Generator().manual_seed(t))
        a = alpha_bar(t)
        torch.testing.assert_close(out, a**0.5 * known + (1 - a) ** 0.5 * noise)
    # the marginal: mean sqrt(abar) x0, variance 1 - abar
    ones = torch.ones(20_000, 1, 1, 1)
    samples = latent.noised(ones, 500, torch.Generator().manual_seed(1))
    a = alpha_bar(500)
    assert samples.mean().item() == pytest.approx(a**0.5, abs=0.03)
    assert samples.var().item() == pytest.approx(1 - a, rel=0.05)


# ----------------------------------------------------------------------------------
# The chain


def test_chain_tokens_and_options(chain):
    assert torch.equal(chain.tokens(PROMPTS), tokens())
    opts = chain.options(PROMPTS, None)
    assert opts.objective == "v" and opts.clip is None and opts.guidance == 2.0
    assert chain.options(PROMPTS, 0.5).guidance == 0.5


def test_latents_and_generate_are_denoising_from_seeded_noise(chain, autoencoder):
    out = chain.latents(PROMPTS, seed=4)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    expected = latent.denoise(
        chain.model, noise, ddim_timesteps(1000, 3), options()
    )
    assert torch.equal(out, expected)
    assert torch.equal(chain.latents(PROMPTS, seed=4), out)
    assert not torch.allclose(chain.latents(PROMPTS, seed=5), out)
    images = chain.generate(PROMPTS, seed=4)
    assert images.shape == (2, 3, 32, 32)
    assert torch.equal(images, first_stage.decode(autoencoder, out))


def test_img2img_latents_at_strength_zero_is_the_source(chain):
    z = torch.randn(2, 4, 8, 8)
    out = chain.img2img_latents(z, PROMPTS, 0.0)
    assert torch.equal(out, z) and out is not z


@pytest.mark.parametrize(
    "strength, times", [(1.0, [999, 500, 0]), (0.5, [0]), (0.7, [500, 0])]
)
def test_img2img_latents_noises_the_source_then_denoises(chain, strength, times):
    z = torch.randn(2, 4, 8, 8)
    assert ddim_timesteps(1000, 3)[-latent.img2img_steps(strength, 3) :] == times
    out = chain.img2img_latents(z, PROMPTS, strength, seed=7)
    start = latent.noised(z, times[0], torch.Generator().manual_seed(7))
    assert torch.equal(out, latent.denoise(chain.model, start, times, options()))
    assert (out - z).abs().max() > 1e-3
    assert torch.equal(chain.img2img_latents(z, PROMPTS, strength, seed=7), out)
    assert not torch.allclose(
        chain.img2img_latents(z, PROMPTS, strength, seed=8), out
    )


def test_img2img_is_img2img_latents_between_the_autoencoder(chain, autoencoder):
    images = WORLD.scenes(2).images
    z = first_stage.encode(autoencoder, images)
    out = chain.img2img(images, PROMPTS, 0.7, seed=2)
    expected = first_stage.decode(
        autoencoder, chain.img2img_latents(z, PROMPTS, 0.7, seed=2)
    )
    assert torch.equal(out, expected)
    assert torch.equal(
        chain.img2img(images, PROMPTS, 0.0), first_stage.decode(autoencoder, z)
    )
    with pytest.raises(ValueError):
        chain.img2img(images, PROMPTS, 1.5)


def test_inpaint_by_blending(chain, autoencoder):
    images = WORLD.scenes(2).images
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, :, 4:13, 9:20] = 1
    masks[1, :, 20:, :] = 1
    out = chain.inpaint(images, masks, PROMPTS, "blend", seed=3)
    known = first_stage.encode(autoencoder, images)
    mask = latent.latent_mask(masks, 4)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(4)  # seed + 1
    z = latent.denoise(
        chain.model,
        noise,
        ddim_timesteps(1000, 3),
        options(),
        known,
        mask,
        generator,
    )
    assert torch.equal(out, first_stage.decode(autoencoder, z))
    # nothing to redraw: the round trip of the images through the first stage, exactly
    kept = chain.inpaint(images, torch.zeros_like(masks), PROMPTS, seed=3)
    assert torch.equal(kept, first_stage.decode(autoencoder, known))


def test_inpaint_with_the_inpainting_model(chain, autoencoder):
    images = WORLD.scenes(2).images
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 8:24, 8:24] = 1
    with pytest.raises(ValueError, match="inpainter"):
        chain.inpaint(images, masks, PROMPTS, "model")
    with pytest.raises(ValueError):
        chain.inpaint(images, masks, PROMPTS, "paint")
    wide = dataclasses.replace(
        chain, inpainter=latent.inpaint_model(chain.model, RECIPE)
    )
    out = wide.inpaint(images, masks, PROMPTS, "model", seed=3)
    known = first_stage.encode(autoencoder, images)
    inputs = latent.inpainting_inputs(known, latent.latent_mask(masks, 4))
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    bound = latent.KnownRegion(wide.inpainter, inputs)
    z = latent.denoise(bound, noise, ddim_timesteps(1000, 3), options())
    assert torch.equal(out, first_stage.decode(autoencoder, z))
    # a fresh inpainting model is the plain model: the same as generating from the same noise
    torch.testing.assert_close(
        out, chain.generate(PROMPTS, seed=3), rtol=0, atol=1e-4
    )


# ----------------------------------------------------------------------------------
# Masks and the inpainting model


def test_latent_mask_is_a_max_pool_by_brute_force():
    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand(3, 1, 32, 32, generator=generator) < 0.03).float()
    for factor in (4, 8):
        out = latent.latent_mask(masks, factor)
        side = 32 // factor
        assert out.shape == (3, 1, side, side)
        for b in range(3):
            for i in range(side):
                for j in range(side):
                    cell = masks[
                        b,
                        0,
                        i * factor : (i + 1) * factor,
                        j * factor : (j + 1) * factor,
                    ]
                    assert out[b, 0, i, j] == float(cell.max() > 0)
        assert 0 < out.mean() < 1  # both kinds of cells occur
    assert torch.equal(
        latent.latent_mask(masks.bool(), 4), latent.latent_mask(masks, 4)
    )


def test_latent_mask_rejects_non_binary_masks():
    with pytest.raises(ValueError):
        latent.latent_mask(torch.full((1, 1, 32, 32), 0.5), 4)
    with pytest.raises(ValueError):
        latent.latent_mask(torch.zeros(1, 2, 32, 32), 4)
    with pytest.raises(ValueError):
        latent.latent_mask(torch.zeros(1, 32, 32), 4)


def test_inpainting_inputs_are_the_masked_latent_then_the_mask():
    latents = torch.randn(2, 4, 8, 8)
    mask = (
        torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.4
    ).float()
    out = latent.inpainting_inputs(latents, mask)
    assert out.shape == (2, 5, 8, 8)
    for b in range(2):
        for i in range(8):
            for j in range(8):
                expected = 0.0 if mask[b, 0, i, j] == 1 else latents[b, :, i, j]
                torch.testing.assert_close(
                    out[b, :4, i, j], torch.zeros(4) + expected
                )
    assert torch.equal(out[:, 4:], mask)


def test_a_fresh_inpainting_model_is_the_plain_model_whatever_its_extra_inputs(
    model,
):
    wider = latent.inpaint_model(model, RECIPE)
    assert wider.unet.in_channels == 4 + 5 and wider.in_channels == 9
    stem, old = wider.unet.stem.weight, model.unet.stem.weight
    assert stem.shape == (
        16,
        4 + 5 + 2,
        3,
        3,
    )  # latent, masked latent and mask, x and y
    assert torch.equal(stem[:, :4], old[:, :4]) and torch.equal(
        stem[:, 9:], old[:, 4:]
    )
    assert torch.count_nonzero(stem[:, 4:9]) == 0
    assert torch.equal(wider.null_tokens, model.null_tokens)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 800])
    with torch.no_grad():
        plain = model(x, t, tokens())
        for seed in range(3):
            extra = (
                torch.randn(
                    2, 5, 8, 8, generator=torch.Generator().manual_seed(seed)
                )
                * 3
            )
            wide = wider(torch.cat([x, extra], dim=1), t, tokens())
            torch.testing.assert_close(wide, plain, rtol=1e-6, atol=1e-6)
    # a copy: changing it leaves the plain model alone
    with torch.no_grad():
        wider.text_encoder.token_embedding.weight.add_(1.0)
        wider.unet.stem.weight[:, 4:9] = 1.0
    assert not torch.equal(
        wider.text_encoder.token_embedding.weight,
        model.text_encoder.token_embedding.weight,
    )
    assert (
        torch.count_nonzero(model.unet.stem.weight)
        == model.unet.stem.weight.numel()
    )
    assert model.unet.stem.weight.shape[1] == 6


def test_known_region_binds_the_inputs_and_repeats_them_for_a_doubled_batch(model):
    inpainter = latent.inpaint_model(model, RECIPE)
    with torch.no_grad():
        inpainter.unet.stem.weight[:, 4:9].normal_(
            0, 0.3
        )  # the extra inputs now matter
    inputs = latent.inpainting_inputs(
        torch.randn(2, 4, 8, 8), torch.ones(2, 1, 8, 8) * 0.5
    )
    bound = latent.KnownRegion(inpainter, inputs)
    x, t, ids = torch.randn(2, 4, 8, 8), torch.tensor([3, 300]), tokens()
    null = bound.null_cond(2)
    assert torch.equal(null, model.null_cond(2))
    with torch.no_grad():
        single = bound(x, t, ids)
        assert torch.equal(single, inpainter(torch.cat([x, inputs], 1), t, ids))
        other = bound(x, t, null)
        doubled = bound(
            torch.cat([x, x]), torch.cat([t, t]), torch.cat([null, ids])
        )
        shuffled = latent.KnownRegion(inpainter, inputs.flip(0))(x, t, ids)
    torch.testing.assert_close(
        doubled, torch.cat([other, single]), rtol=0, atol=1e-6
    )
    assert (shuffled - single).abs().max() > 1e-4  # each image reads its own inputs


def is_box(mask):
    """The 1s of a 2-D 0/1 mask fill exactly the box spanned by their rows and columns."""
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    box = torch.zeros_like(mask)
    box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = 1
    return torch.equal(mask, box)


def test_random_masks_are_rectangles_and_a_quarter_are_whole():
    side, n = 8, 2000
    masks = latent.random_masks(n, side, torch.Generator().manual_seed(0))
    assert masks.shape == (n, 1, side, side)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    flat = masks[:, 0]
    assert (flat.sum((1, 2)) > 0).all()
    assert all(is_box(m) for m in flat[:400])
    whole = (flat == 1).flatten(1).all(1).float().mean().item()
    assert whole == pytest.approx(0.25, abs=0.05)
    heights = flat.any(2).sum(1)  # rows holding a 1
    assert set(heights.tolist()) == set(
        range(1, side + 1)
    )  # every height from 1 to side
    again = latent.random_masks(n, side, torch.Generator().manual_seed(0))
    assert torch.equal(again, masks)
    none = latent.random_masks(
        500, side, torch.Generator().manual_seed(1), full=0.0
    )
    assert (none[:, 0] == 1).flatten(1).all(1).float().mean() < 0.02
    assert (
        latent.random_masks(50, side, torch.Generator().manual_seed(1), full=1.0)
        == 1
    ).all()


# ----------------------------------------------------------------------------------
# Data and training


def test_encode_scenes_is_the_first_stage_and_tokenizer_on_alternating_captions(
    autoencoder,
):
    data = latent.encode_scenes(autoencoder, TOKENIZER, WORLD, 6, batch_size=4)
    scenes = WORLD.scenes(6)
    assert len(data) == 6 and data.latents.shape == (6, 4, 8, 8)
    torch.testing.assert_close(
        data.latents,
        first_stage.encode(autoencoder, scenes.images),
        rtol=1e-5,
        atol=1e-6,
    )
    draws = WORLD.phrasing_draws(6)
    english = captions.captions(WORLD, scenes, "en", draws)
    chinese = captions.captions(WORLD, scenes, "zh", draws)
    assert data.texts[0::2] == english[0::2]
    assert data.texts[1::2] == chinese[1::2]
    assert all(ord(c) < 128 for c in data.texts[0]) and any(
        ord(c) > 127 for c in data.texts[1]
    )
    assert torch.equal(data.tokens, TOKENIZER(data.texts, CONTEXT))
    only = latent.encode_scenes(autoencoder, TOKENIZER, WORLD, 3, languages=("en",))
    assert only.texts == english[:3]


def test_encode_scenes_rejects_bad_arguments(autoencoder):
    with pytest.raises(TypeError):
        latent.encode_scenes(torch.nn.Identity(), TOKENIZER, WORLD, 2)
    with pytest.raises(ValueError):
        latent.encode_scenes(autoencoder, TOKENIZER, WORLD, 2, split="test-ish")
    with pytest.raises(ValueError):
        latent.encode_scenes(autoencoder, TOKENIZER, WORLD, 2, languages=("fr",))
    with pytest.raises(ValueError):
        latent.encode_scenes(autoencoder, TOKENIZER, WORLD, 0)


def scenes_by_hand(n=8):
    """LatentScenes with latents[i] = i everywhere and distinct captions."""
    texts = CORPUS[:n]
    latents = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(
        n, 4, 8, 8
    )
    return latent.LatentScenes(latents.clone(), TOKENIZER(texts, CONTEXT), texts)


def test_latent_batches_pair_each_latent_with_its_caption():
    data = scenes_by_hand()
    batches = latent.latent_batches(data, 5, seed=0)
    for step in range(3):
        latents, ids = batches(step)
        assert latents.shape == (5, 4, 8, 8) and ids.shape == (5, CONTEXT)
        rows = latents[:, 0, 0, 0].long()
        assert torch.equal(latents, data.latents[rows])
        assert torch.equal(ids, data.tokens[rows])
    first = latent.latent_batches(data, 5, seed=0)(0)[0]
    assert torch.equal(first, latent.latent_batches(data, 5, seed=0)(0)[0])
    assert not torch.equal(first, latent.latent_batches(data, 5, seed=1)(0)[0])


def random_scenes():
    data = scenes_by_hand()
    data.latents = torch.randn(
        8, 4, 8, 8, generator=torch.Generator().manual_seed(0)
    )
    return data


@pytest.mark.parametrize("text", ["frozen", "joint"])
def test_train_latent_runs_and_trains_the_text_encoder_only_when_joint(text):
    model = tiny_model(
        text
    )  # awake: a fresh U-Net's zero output layers pass the text no gradient
    recipe = dataclasses.replace(RECIPE, text=text)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, history = latent.train_latent(
        model, random_scenes(), recipe, choose_precision("cpu"), progress=False
    )
    assert isinstance(trained, latent.TextToImageUNet)
    assert history.steps == [0, 1] and all(
        torch.isfinite(torch.tensor(history.losses))
    )
    changed = {
        name
        for name, value in model.state_dict().items()
        if name.startswith("text_encoder.") and not torch.equal(value, before[name])
    }
    if text == "frozen":
        assert not changed
    else:  # every part the token states come from (the projection is CLIP's, unused here)
        for part in (
            "token_embedding",
            "positions",
            "blocks.0.attention.to_q",
            "final_norm",
        ):
            assert any(
                name.startswith("text_encoder." + part) for name in changed
            ), part
    unet = [n for n in before if n.startswith("unet.") and "weight" in n]
    assert any(not torch.equal(model.state_dict()[n], before[n]) for n in unet)
    assert trained.null_tokens.shape == NULL.shape


def test_train_inpainting_fine_tunes_a_wider_copy():
    model = tiny_model(awake=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inpainter, history = latent.train_inpainting(
        model, random_scenes(), RECIPE, choose_precision("cpu"), progress=False
    )
    assert isinstance(inpainter, latent.TextToImageUNet) and not inpainter.training
    assert inpainter.unet.in_channels == 9
    assert history.steps == [0, 1] and all(
        torch.isfinite(torch.tensor(history.losses))
    )
    for name, value in model.state_dict().items():  # the plain model is left alone
        assert torch.equal(value, before[name]), name
    # frozen recipe: the copied text encoder stays what it was
    for name, value in inpainter.text_encoder.state_dict().items():
        assert torch.equal(value, before["text_encoder." + name]), name


# ----------------------------------------------------------------------------------
# Recipes and the loader's checks


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("text", "other", ValueError),
        ("channels", 12, ValueError),
        ("batch", 9, ValueError),  # more than the 8 scenes
        ("cond_dropout", 1.5, ValueError),
        ("lr", 0.0, ValueError),
        ("steps", 0, ValueError),
        ("steps", 2.0, TypeError),
        ("seed", -1, ValueError),
    ],
)
def test_latent_recipe_rejects_bad_values(field, value, error):
    with pytest.raises(error):
        dataclasses.replace(RECIPE, **{field: value})


def test_book_latent_recipe():
    assert latent.book_latent_recipe("joint").text == "joint"
    assert latent.book_latent_recipe(seed=3).seed == 3
    recipe = latent.book_latent_recipe()
    assert recipe.text == "frozen" and recipe.batch <= recipe.scenes
    with pytest.raises(ValueError):
        latent.book_latent_recipe("thawed")


def test_load_latent_diffusion_checks_its_arguments_before_any_work(monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("load_latent_diffusion went on to load CLIP")

    monkeypatch.setattr(latent.clip_models, "load_clip", no_work)
    with pytest.raises(TypeError):
        latent.load_latent_diffusion("recipe", progress=False)
    with pytest.raises(TypeError):
        latent.load_latent_diffusion(RECIPE, inpainter="yes", progress=False)
    with pytest.raises(TypeError):
        latent.load_latent_diffusion(RECIPE, progress=1)


# ----------------------------------------------------------------------------------
# Why latents: the cost table


def test_training_cost_times_a_copy_and_leaves_the_model_untouched(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    latents = torch.randn(2, 4, 8, 8)
    ms = latent.training_cost(model, latents, tokens(), steps=1)
    assert 0 < ms < 60_000
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError):
        latent.training_cost(model, latents, tokens(), steps=0)


def test_pixel_twin_is_the_same_network_on_pixels(chain):
    twin = latent.pixel_twin(chain, RECIPE)
    assert (twin.unet.in_channels, twin.unet.image_size) == (3, 32)
    assert twin.unet(
        torch.zeros(1, 3, 32, 32), 0, twin.text_states(tokens()[:1])
    ).shape == (
        1,
        3,
        32,
        32,
    )
    assert twin.text_encoder is not chain.model.text_encoder  # a copy
    latent_names = {k for k, _ in chain.model.unet.named_parameters()}
    assert latent_names == {k for k, _ in twin.unet.named_parameters()}
    shapes = {k: p.shape for k, p in twin.unet.named_parameters()}
    differs = [
        k for k, p in chain.model.unet.named_parameters() if p.shape != shapes[k]
    ]
    assert set(differs) == {"stem.weight", "out.1.weight", "out.1.bias"}


def test_cost_table_lists_the_three_training_and_two_sampling_costs(chain):
    table = latent.cost_table(chain, RECIPE, batch=2, samples=2)
    assert set(table) == {
        "train latent U-Net",
        "train same U-Net on pixels",
        "train chapter 5 pixel U-Net",
        "sample latent U-Net",
        "sample same U-Net on pixels",
    }
    assert all(value > 0 for value in table.values())
    with pytest.raises(TypeError):
        latent.cost_table("not a chain")

"""CLIP's parts: the loss against torch's cross-entropy and a brute-force per-row loss, the logit-scale clamp,
the text encoder read at the end token with nothing after it leaking in (outputs and gradients), the ViT's
patches against unfold, attention pooling against torch's multi-head attention, and the AdamW groups."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minigen.models import clip

pytestmark = pytest.mark.usefixtures("one_thread")


def small_text_encoder(vocabulary=50):
    torch.manual_seed(0)
    return clip.TextEncoder(
        vocabulary, context_length=12, width=32, layers=2, heads=4, embed_dim=16
    )


def tokens_ending_at(ends, vocabulary=50, length=12, seed=1):
    """Rows of random ids below the end token (vocabulary - 1), the end token at `ends`, zero padding."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocabulary - 2, (len(ends), length), generator=g)
    for row, end in enumerate(ends):
        tokens[row, end] = vocabulary - 1
        tokens[row, end + 1 :] = 0
    return tokens


# --- the loss ----------------------------------------------------------------------------------------------


def test_the_loss_is_the_mean_of_both_cross_entropies_when_pairs_are_unique():
    logits = (
        torch.randn(
            7, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        * 3
    )
    target = torch.arange(7)
    expected = (
        F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)
    ) / 2
    assert torch.allclose(clip.contrastive_loss(logits), expected)
    diagonal = torch.eye(7, dtype=torch.bool)
    assert torch.allclose(clip.contrastive_loss(logits, diagonal), expected)


def test_pairs_of_one_meaning_are_all_positives_as_a_brute_force_loss_says():
    logits = (
        torch.randn(
            6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64
        )
        * 2
    )
    groups = torch.tensor([0, 1, 0, 2, 1, 0])

    def brute_force(scores):
        losses = []
        for i in range(len(scores)):
            probabilities = scores[i].softmax(dim=0)
            mass = sum(
                probabilities[j]
                for j in range(len(scores))
                if groups[j] == groups[i]
            )
            losses.append(-torch.log(mass))
        return torch.stack(losses).mean()

    expected = (brute_force(logits) + brute_force(logits.T)) / 2
    positives = groups[:, None] == groups[None, :]
    assert torch.allclose(clip.contrastive_loss(logits, positives), expected)
    # symmetric in images and texts
    assert torch.allclose(clip.contrastive_loss(logits.T, positives), expected)
    # duplicates are no longer pushed apart
    assert clip.contrastive_loss(logits, positives) < clip.contrastive_loss(logits)


def test_the_loss_starts_at_log_batch_for_uninformative_logits():
    assert clip.contrastive_loss(torch.zeros(32, 32)).item() == pytest.approx(
        math.log(32)
    )


# --- the logit scale ---------------------------------------------------------------------------------------


def test_the_logit_scale_starts_at_1_over_0_07_and_is_clipped_at_100():
    model = clip.CLIP(
        clip.VisionTransformer(16, 8, 16, 1, 2, 8), small_text_encoder()
    )
    assert model.logit_scale().item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        model.log_scale.fill_(6.0)  # exp(6) = 403
    scale = model.logit_scale()
    assert scale.item() == pytest.approx(100.0)
    scale.backward()
    assert (
        model.log_scale.grad.item() == 0.0
    )  # beyond the clip nothing pushes it further


# --- the text encoder --------------------------------------------------------------------------------------


def test_the_text_is_read_at_its_end_token_and_nothing_after_it_counts():
    encoder = small_text_encoder().eval()
    tokens = tokens_ending_at([3, 7, 11])
    features = encoder(tokens)
    other_padding = tokens.clone()
    other_padding[0, 4:] = (
        7  # ids after the end token (below it, so the end stays the largest)
    )
    assert torch.allclose(encoder(other_padding)[0], features[0], atol=1e-6)
    assert torch.allclose(
        encoder(tokens[:1, :4])[0], features[0], atol=1e-6
    )  # the text alone, unpadded
    changed = tokens.clone()
    changed[0, 1] = (changed[0, 1] + 1) % 40 + 1  # a token of the text itself
    assert not torch.allclose(encoder(changed)[0], features[0], atol=1e-4)


def test_token_states_are_the_normed_states_up_to_each_end_token():
    torch.manual_seed(0)
    encoder = small_text_encoder().eval()
    tokens = tokens_ending_at([3, 7, 11])
    cond = encoder.token_states(tokens)
    assert cond.states.shape == (3, 12, encoder.final_norm.normalized_shape[0])
    assert cond.mask.sum(1).tolist() == [4, 8, 12]  # up to and with the end token
    assert cond.mask[0, :4].all() and not cond.mask[0, 4:].any()
    # the embedding is the projection of the state at the end token
    ends = torch.tensor([3, 7, 11])
    torch.testing.assert_close(
        encoder(tokens), encoder.projection(cond.states[torch.arange(3), ends])
    )
    # a row alone, unpadded, has the same real states (causal: padding unseen)
    alone = encoder.token_states(tokens[:1, :4])
    torch.testing.assert_close(
        alone.states[0], cond.states[0, :4], atol=1e-6, rtol=0
    )
    # each state is LayerNormed: mean 0, variance 1 before the affine (gain 1 at init)
    torch.testing.assert_close(
        cond.states.mean(-1), torch.zeros(3, 12), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="token ids"):
        encoder.token_states(tokens + 1000)


def test_no_gradient_reaches_the_positions_after_the_end_token():
    encoder = small_text_encoder()
    tokens = tokens_ending_at([4, 9])
    embedded = {}

    def keep(module, inputs, output):
        output.retain_grad()
        embedded["x"] = output

    encoder.token_embedding.register_forward_hook(keep)
    encoder(tokens).sum().backward()
    grad = embedded["x"].grad.abs().sum(dim=2)  # (B, L)
    assert (grad[0, 5:] == 0).all() and (grad[1, 10:] == 0).all()
    assert (grad[0, :5] > 0).all() and (grad[1, :10] > 0).all()


# --- the image encoders ------------------------------------------------------------------------------------


def test_vit_patches_are_the_unfolded_image_times_the_kernel_row_by_row():
    torch.manual_seed(0)
    vit = clip.VisionTransformer(
        image_size=16, patch_size=4, width=24, layers=1, heads=2, embed_dim=8
    )
    images = torch.rand(2, 3, 16, 16)
    patches = F.unfold(images, kernel_size=4, stride=4).transpose(
        1, 2
    )  # (B, 16, 48) row by row
    expected = patches @ vit.to_patches.weight.flatten(1).T  # (B, 16, 24)
    got = vit.to_patches(images).flatten(2).transpose(1, 2)
    assert torch.allclose(got, expected, atol=1e-5)
    assert vit(images).shape == (2, 8)


def test_attention_pooling_is_torch_multihead_attention_with_the_mean_as_query():
    torch.manual_seed(0)
    pool = clip.AttentionPool(positions=9, channels=16, heads=4, out_dim=5)
    x = torch.randn(3, 16, 3, 3)
    reference = nn.MultiheadAttention(16, 4, batch_first=True)
    attention = pool.attention
    with torch.no_grad():
        reference.in_proj_weight.copy_(
            torch.cat(
                [
                    attention.to_q.weight,
                    attention.to_k.weight,
                    attention.to_v.weight,
                ]
            )
        )
        reference.in_proj_bias.copy_(
            torch.cat(
                [attention.to_q.bias, attention.to_k.bias, attention.to_v.bias]
            )
        )
        reference.out_proj.weight.copy_(attention.to_out.weight)
        reference.out_proj.bias.copy_(attention.to_out.bias)
    tokens = x.flatten(2).transpose(1, 2)  # (B, 9, C)
    tokens = (
        torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        + pool.positions.table
    )
    pooled, _ = reference(tokens[:, :1], tokens, tokens)
    assert torch.allclose(pool(x), pool.projection(pooled[:, 0]), atol=1e-5)


def test_the_resnet_halves_the_size_three_times_and_pools_to_the_embedding():
    torch.manual_seed(0)
    resnet = clip.ResNetEncoder(
        image_size=32, width=8, blocks=(1, 2, 1), heads=2, embed_dim=12
    )
    images = torch.rand(4, 3, 32, 32)
    features = resnet.stages(resnet.stem(images))
    assert features.shape == (
        4,
        8 * 4 * 4,
        4,
        4,
    )  # width * 2^2 planes * expansion 4; 32 / 8
    assert resnet(images).shape == (4, 12)
    block = clip.Bottleneck(8, 4, stride=2)
    assert block(torch.rand(2, 8, 6, 6)).shape == (2, 16, 3, 3)


# --- training set-up ---------------------------------------------------------------------------------------


def test_weight_decay_spares_gains_biases_embeddings_positions_the_class_token_and_the_scale():
    model = clip.CLIP(
        clip.ResNetEncoder(16, 8, (1, 1, 1), 2, 8), small_text_encoder()
    )
    decay, spared = clip.parameter_groups(model, 0.2)
    assert decay["weight_decay"] == 0.2 and spared["weight_decay"] == 0.0
    names = {id(p): name for name, p in model.named_parameters()}
    spared_names = {names[id(p)] for p in spared["params"]}
    decayed_names = {names[id(p)] for p in decay["params"]}
    assert spared_names.isdisjoint(decayed_names) and len(
        spared_names | decayed_names
    ) == len(names)
    assert {
        "log_scale",
        "text_encoder.token_embedding.weight",
        "text_encoder.positions.table",
    } <= spared_names
    assert (
        all(p.ndim >= 2 for p in decay["params"])
        and "text_encoder.projection.weight" in decayed_names
    )
    assert all(
        name.endswith(("bias", "weight", "table")) or name == "log_scale"
        for name in spared_names
    )


def test_bad_input_is_refused_with_a_reason():
    encoder = small_text_encoder()
    with pytest.raises(
        ValueError, match=r"tokens must be \(B, L <= 12\) int64 ids"
    ):
        encoder(torch.zeros(2, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 50\)"):
        encoder(torch.full((1, 4), 50))
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 16, 16\)"):
        clip.VisionTransformer(16, 4, 16, 1, 2, 8)(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="patch_size 5 must divide image_size 16"):
        clip.VisionTransformer(16, 5)
    with pytest.raises(ValueError, match="logits must be square"):
        clip.contrastive_loss(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"positives must be \(2, 2\) bool"):
        clip.contrastive_loss(torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="positives must hold the diagonal"):
        clip.contrastive_loss(
            torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool)
        )
    with pytest.raises(
        ValueError, match="negative_logits must have one row per image"
    ):
        clip.contrastive_loss(torch.zeros(2, 2), negative_logits=torch.zeros(3, 1))


def test_vit_is_class_token_positions_norm_blocks_norm_projection_in_that_order():
    torch.manual_seed(0)
    vit = clip.VisionTransformer(
        image_size=8, patch_size=4, width=16, layers=2, heads=2, embed_dim=6
    ).eval()
    with (
        torch.no_grad()
    ):  # gains and biases away from 1 and 0, so that a missing norm shows
        for norm in (vit.pre_norm, vit.post_norm):
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.uniform_(-1.0, 1.0)
    images = torch.rand(3, 3, 8, 8)
    patches = vit.to_patches(images).flatten(2).transpose(1, 2)  # (B, 4, 16)
    x = (
        torch.cat([vit.class_token.expand(3, 1, 16), patches], dim=1)
        + vit.positions.table
    )
    x = F.layer_norm(x, (16,), vit.pre_norm.weight, vit.pre_norm.bias)
    for block in vit.blocks:
        x = block(x)
    expected = (
        F.layer_norm(x[:, 0], (16,), vit.post_norm.weight, vit.post_norm.bias)
        @ vit.projection.weight.T
    )
    assert torch.allclose(vit(images), expected, atol=1e-5)


def test_hard_negatives_join_the_image_side_only_and_are_never_positive():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 5, generator=g, dtype=torch.float64)
    negative = torch.randn(5, 2, generator=g, dtype=torch.float64)
    target = torch.arange(5)
    rows = torch.cat(
        [logits, negative], 1
    )  # each image against 5 texts and 2 negatives
    expected = (
        F.cross_entropy(rows, target) + F.cross_entropy(logits.T, target)
    ) / 2
    assert torch.allclose(
        clip.contrastive_loss(logits, negative_logits=negative), expected
    )
    positives = torch.eye(5, dtype=torch.bool)
    positives[0, 3] = (
        True  # text 3 is also true of image 0: rows and columns differ now
    )
    image_side = -rows.softmax(1)[target, target].log()
    image_side[0] = -rows.softmax(1)[0, [0, 3]].sum().log()
    text_side = -logits.T.softmax(1)[target, target].log()
    text_side[3] = (
        -logits.T.softmax(1)[3, [0, 3]].sum().log()
    )  # text 3: images 0 and 3
    got = clip.contrastive_loss(logits, positives, negative)
    assert torch.allclose(got, (image_side.mean() + text_side.mean()) / 2)


# --- batches and training ----------------------------------------------------------------------------------


def test_caption_batches_hold_true_positives_and_negatives_in_each_language():
    from minigen.data import captions
    from minigen.data.shapes import ShapesWorld
    from minigen.tokenizers.bpe import BPETokenizer

    world = ShapesWorld(max_objects=2)
    labels, draws = (
        world.sample_labels(300, "train"),
        world.phrasing_draws(300, "train"),
    )
    corpus = captions.captions(world, labels, "en", draws) + captions.captions(
        world, labels, "zh", draws
    )
    tokenizer = BPETokenizer.train(corpus, 700)
    batches = clip.caption_batches(
        world, tokenizer, 40, negatives=("swap_colours",)
    )
    batch = batches(2)  # scenes 80 .. 119
    assert batch.images.shape == (40, 3, 32, 32) and batch.tokens.shape == (40, 40)
    assert torch.equal(batch.images, world.scenes(range(80, 120)).images)
    assert batch.positives.diagonal().all()
    texts = [tokenizer.decode(row) for row in batch.tokens]
    assert all(
        ("的" in text) == (i % 2 == 1) for i, text in enumerate(texts)
    )  # en, zh, en, ...
    scenes = captions.scene_objects(world.sample_labels(range(80, 120)), world)
    for i, scene in enumerate(scenes):
        held = captions.meanings_held(scene)
        for j, other in enumerate(scenes):
            phrasing = int(
                world.phrasing_draws([80 + j])[0]
                * captions.phrasing_count(len(other), "en" if j % 2 == 0 else "zh")
            )
            assert batch.positives[i, j] == (
                captions.meaning(other, phrasing) in held
            )
    negatives = [tokenizer.decode(row) for row in batch.negatives]
    assert all(negative != text for negative, text in zip(negatives, texts))
    assert torch.equal(
        batches(2).tokens, batch.tokens
    )  # a pure function of the step
    with pytest.raises(ValueError, match="every kind of negative must be one of"):
        clip.caption_batches(world, tokenizer, 8, negatives=("shuffle",))


def test_a_few_steps_on_one_repeated_batch_lower_the_loss_below_chance():
    from minigen.core.runtime import choose_precision
    from minigen.data.shapes import ShapesWorld
    from minigen.tokenizers.bpe import BPETokenizer

    world = ShapesWorld(max_objects=1)
    tokenizer = BPETokenizer.train(world.scenes(200).captions, 600)
    batches = clip.caption_batches(
        world, tokenizer, 16, languages=("en",), context_length=32
    )
    fixed = batches(0)
    torch.manual_seed(0)
    model = clip.CLIP(
        clip.VisionTransformer(32, 8, 32, 1, 2, 16),
        clip.TextEncoder(len(tokenizer), 32, 32, 1, 2, 16),
    )
    history = clip.train_clip(
        model,
        lambda step: fixed,
        60,
        lr=3e-3,
        warmup_steps=5,
        progress=False,
        precision=choose_precision("cpu", "fp32"),
    )
    assert history.metrics["chance"][0] == pytest.approx(math.log(16))
    assert (
        history.losses[-1] < 0.5 * history.losses[0]
        and history.losses[-1] < math.log(16) / 2
    )
    assert history.metrics["scale"][0] == pytest.approx(1 / 0.07, rel=0.05)


def test_the_default_context_holds_the_longest_caption_of_two_objects():
    from minigen.data import captions
    from minigen.data.shapes import SceneObject
    from minigen.tokenizers.bpe import BPETokenizer

    # two objects named by their cells in Chinese, the longest names: 33 tokens with start and end
    objects = [
        SceneObject("cross", "magenta", "large", 7),
        SceneObject("cross", "magenta", "large", 5),
    ]
    text = captions.describe_scene(objects, 3, "zh", 2)
    tokenizer = BPETokenizer.train([text], 600)
    assert len(tokenizer.encode(text)) + 2 == 33 <= clip.CAPTION_CONTEXT


# --- the cached CLIP -----------------------------------------------------------------------------------------

TINY = clip.CLIPRecipe(
    steps=2,
    batch_size=4,
    warmup_steps=1,
    vocabulary_size=600,
    width=32,
    embed_dim=16,
)


def test_load_clip_trains_once_then_loads_the_same_model_and_tokenizer(
    tmp_path, monkeypatch
):
    from minigen.data.shapes import ShapesWorld

    monkeypatch.setenv("MINIGEN_CACHE", str(tmp_path))
    world = ShapesWorld(max_objects=2)
    model, tokenizer = clip.load_clip(world, TINY, device="cpu", progress=False)
    assert not model.training and len(model.history.losses) == 2
    (saved,) = tmp_path.glob("clip-resnet-2steps-*.pt")
    monkeypatch.setattr(
        clip, "train_clip", lambda *a, **k: pytest.fail("trained again")
    )
    again, same_tokenizer = clip.load_clip(world, TINY, device="cpu")
    assert same_tokenizer.merges == tokenizer.merges
    assert again.history.losses == model.history.losses
    for name, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name
    tokens = tokenizer(world.scenes(3).captions, clip.CAPTION_CONTEXT)
    assert torch.equal(again.encode_text(tokens), model.encode_text(tokens))
    # another recipe or another world is another file, trained afresh
    monkeypatch.undo()
    monkeypatch.setenv("MINIGEN_CACHE", str(tmp_path))
    clip.load_clip(world, TINY, device="cpu", progress=False, path=None)
    vit = clip.CLIPRecipe(**{**TINY.__dict__, "encoder": "vit"})
    clip.load_clip(world, vit, device="cpu", progress=False)
    clip.load_clip(ShapesWorld(max_objects=1), TINY, device="cpu", progress=False)
    assert len(list(tmp_path.glob("clip-*.pt"))) == 3
    assert saved.exists()


def test_a_cached_clip_of_other_settings_is_refused(tmp_path):
    from minigen.data.shapes import ShapesWorld

    path = tmp_path / "mine.pt"
    clip.load_clip(ShapesWorld(), TINY, path=path, device="cpu", progress=False)
    other = clip.CLIPRecipe(**{**TINY.__dict__, "seed": 1})
    with pytest.raises(ValueError, match="other settings"):
        clip.load_clip(ShapesWorld(), other, path=path, device="cpu")


def test_an_unwritable_cache_fails_before_clip_training(tmp_path, monkeypatch):
    from minigen.data.shapes import ShapesWorld

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MINIGEN_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(
        clip, "train_clip", lambda *a, **k: pytest.fail("training started")
    )
    with pytest.raises(OSError, match="cannot write the trained CLIP"):
        clip.load_clip(ShapesWorld(), TINY, device="cpu")


def test_a_recipe_with_bad_settings_is_refused_when_made():
    with pytest.raises(ValueError, match="encoder must be one of"):
        clip.CLIPRecipe(encoder="vgg")
    with pytest.raises(ValueError, match="every kind of negative must be one of"):
        clip.CLIPRecipe(negatives=("shuffle",))
    with pytest.raises(TypeError, match="negatives"):
        clip.CLIPRecipe(negatives=["swap_colours"])
    with pytest.raises(ValueError, match="batch_size"):
        clip.CLIPRecipe(batch_size=1)
    with pytest.raises(ValueError, match="lr"):
        clip.CLIPRecipe(lr=0.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        clip.CLIPRecipe(steps=100, warmup_steps=100)


def test_the_caption_tokenizer_learns_both_languages_and_round_trips_them():
    from minigen.data import captions
    from minigen.data.shapes import ShapesWorld
    from minigen.tokenizers.bpe import BPETokenizer

    world = ShapesWorld(max_objects=2)
    tokenizer = clip.caption_tokenizer(world, 600)
    assert len(tokenizer) == 600
    assert clip.caption_tokenizer(world, 600).merges == tokenizer.merges
    scenes = world.scenes(50, split="test")
    for language in captions.LANGUAGES:
        for text in captions.captions(world, scenes, language):
            ids = tokenizer.encode(text)
            assert tokenizer.decode(ids) == text
            assert len(ids) < len(text.encode())  # merges were learned and used
    # learned from the captions of the first TOKENIZER_SCENES training scenes, both languages
    labels = world.sample_labels(clip.TOKENIZER_SCENES)
    corpus = captions.captions(
        world, labels, "en", world.phrasing_draws(5000)
    ) + captions.captions(world, labels, "zh", world.phrasing_draws(5000))
    assert clip.caption_corpus(world) == corpus
    assert tokenizer.merges == BPETokenizer.train(corpus, 600).merges


def test_build_clip_makes_either_encoder_with_a_shared_embedding():
    vit, resnet = clip.build_clip("vit", 600), clip.build_clip("resnet", 600)
    assert isinstance(vit.image_encoder, clip.VisionTransformer)
    assert isinstance(resnet.image_encoder, clip.ResNetEncoder)
    images = torch.rand(2, 3, 32, 32)
    tokens = torch.tensor([[598, 5, 599] + [0] * 37] * 2)
    for model in (vit, resnet):
        assert model(images, tokens).shape == (2, 2)
        assert model.text_encoder.context_length == clip.CAPTION_CONTEXT
    with pytest.raises(ValueError, match="encoder must be one of"):
        clip.build_clip("vgg", 600)


def test_load_clip_defaults_to_the_book_world_and_recipe(tmp_path, monkeypatch):
    from minigen.data.shapes import ShapesWorld

    monkeypatch.setenv("MINIGEN_CACHE", str(tmp_path))
    monkeypatch.setenv("MINIGEN_PROFILE", "smoke")
    world = clip.book_world()
    assert world == ShapesWorld(max_objects=2, holdout=clip.HOLDOUT)
    model, _ = clip.load_clip(device="cpu", progress=False)
    assert len(model.history.losses) == clip.book_recipe().steps
    monkeypatch.setattr(
        clip, "train_clip", lambda *a, **k: pytest.fail("trained again")
    )
    clip.load_clip(world, clip.book_recipe(), device="cpu")  # the same file
    assert len(list(tmp_path.glob("clip-*.pt"))) == 1


def test_the_book_recipe_follows_the_profile(monkeypatch):
    monkeypatch.setenv("MINIGEN_PROFILE", "cpu")
    assert clip.book_recipe() == clip.CLIPRecipe()  # the defaults are the cpu run
    monkeypatch.setenv("MINIGEN_PROFILE", "smoke")
    smoke = clip.book_recipe()
    assert smoke.steps < 10 and smoke.negatives == clip.CLIPRecipe().negatives
    monkeypatch.setenv("MINIGEN_PROFILE", "gpu")
    assert clip.book_recipe().steps > clip.CLIPRecipe().steps

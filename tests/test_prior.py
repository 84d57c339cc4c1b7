"""DALL·E 2's prior pieces: slerp against the closed form on a circle, the PCA quantiser against an
eigendecomposition of the covariance, and the diffusion prior's network (padding and later positions
have no influence on the query's output)."""

import math

import pytest
import torch

from minigen.models import prior


def test_slerp_walks_the_great_circle_at_a_constant_angular_speed():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    for t in (0.0, 0.25, 0.5, 0.9, 1.0):
        expected = torch.tensor(
            [math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)]
        )
        assert torch.allclose(prior.slerp(a, b, t), expected, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=1)
    v = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=1)
    mid = prior.slerp(u, v, 0.3)
    assert torch.allclose(
        mid.norm(dim=1), torch.ones(5), atol=1e-5
    )  # stays on the sphere
    angle = torch.arccos((u * v).sum(1))
    assert torch.allclose(
        torch.arccos((u * mid).sum(1).clamp(-1, 1)), 0.3 * angle, atol=1e-4
    )
    ts = torch.tensor([0.0, 0.5, 1.0, 0.2, 0.7])  # one t per row
    rows = prior.slerp(u, v, ts)
    for i, t in enumerate(ts.tolist()):
        assert torch.allclose(rows[i], prior.slerp(u[i], v[i], t), atol=1e-6)


def test_slerp_of_parallel_vectors_is_the_straight_line_and_bad_input_is_refused():
    a = torch.tensor([[2.0, 0.0]])
    assert torch.allclose(prior.slerp(a, 3 * a, 0.5), 2 * a)  # (2 + 6) / 2
    with pytest.raises(ValueError, match="t must lie in"):
        prior.slerp(a, a, 1.5)
    with pytest.raises(ValueError, match="one shape"):
        prior.slerp(a, torch.zeros(1, 3), 0.5)


def gaussian_embeddings(n=2000, width=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(3.0, 0.1, width)
    mixing = torch.linalg.qr(torch.randn(width, width, generator=g))[0]
    return (torch.randn(n, width, generator=g) * scales) @ mixing.T + 5.0


def test_pca_axes_and_explained_variance_match_the_covariance_eigendecomposition():
    x = gaussian_embeddings()
    quantiser = prior.PCAQuantizer(x, dims=4, buckets=16)
    covariance = torch.cov(x.double().T)
    values, vectors = torch.linalg.eigh(covariance)  # ascending
    values, vectors = values.flip(0), vectors.flip(1)
    assert torch.allclose(
        quantiser.explained, (values.cumsum(0) / values.sum()).float(), atol=1e-5
    )
    for d in range(4):  # the same axes, up to sign
        assert abs(abs(quantiser.axes[d] @ vectors[:, d]) - 1) < 1e-6


def test_codes_hold_equal_shares_and_decoding_gets_closer_with_more_buckets_and_dims():
    x = gaussian_embeddings()
    codes = prior.PCAQuantizer(x, dims=3, buckets=8).encode(x)
    assert codes.dtype == torch.long and codes.shape == (2000, 3)
    counts = torch.stack(
        [torch.bincount(codes[:, d], minlength=8) for d in range(3)]
    )
    assert (counts - 250).abs().max() <= 2  # quantile buckets: 2000 / 8 each
    errors = {}
    for dims, buckets in ((3, 8), (3, 64), (8, 64), (12, 256)):
        q = prior.PCAQuantizer(x, dims, buckets)
        errors[dims, buckets] = (
            (q.decode(q.encode(x)) - x).square().sum(1).mean().item()
        )
    assert errors[3, 8] > errors[3, 64] > errors[8, 64] > errors[12, 256]
    # with every axis kept, what is left is the quantisation error alone: small
    assert errors[12, 256] < 0.01 * x.var(0).sum().item()


def test_the_quantiser_refuses_bad_input():
    x = gaussian_embeddings(100, 6)
    with pytest.raises(ValueError, match="dims"):
        prior.PCAQuantizer(x, dims=7, buckets=4)
    q = prior.PCAQuantizer(x, dims=2, buckets=4)
    with pytest.raises(ValueError, match="codes must lie in"):
        q.decode(torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match=r"embeddings must be \(N, 6\)"):
        q.encode(torch.zeros(3, 5))


def make_net():
    torch.manual_seed(0)
    return prior.DiffusionPriorNet(
        embed_dim=6, token_dim=6, context_length=11, width=32, layers=2
    ).eval()


def inputs(length=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    image, text = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    t = torch.tensor([0, 10, 999])
    states = torch.randn(3, length, 6, generator=g)
    mask = torch.arange(length)[None] < torch.tensor([[4], [10], [7]])
    return image, t, text, states, mask


def test_the_condition_is_the_tokens_then_the_text_embedding_as_a_real_token():
    _, _, text, states, mask = inputs()
    cond = prior.prior_condition(states, mask, text)
    assert cond.states.shape == (3, 11, 6) and cond.mask[:, -1].all()
    assert torch.equal(cond.states[:, -1], text) and torch.equal(
        cond.mask[:, :-1], mask
    )
    with pytest.raises(ValueError, match="text_embedding must be"):
        prior.prior_condition(states, mask, text[:, :4])


def test_padding_tokens_have_no_influence_and_every_input_does():
    net = make_net()
    image, t, text, states, mask = inputs()
    out = net(image, t, prior.prior_condition(states, mask, text))
    assert out.shape == (3, 6)
    junk = states.clone()
    junk[~mask] = 100.0  # padding states replaced
    same = net(image, t, prior.prior_condition(junk, mask, text))
    assert torch.allclose(same, out, atol=1e-5)
    for changed in (
        net(image + 1, t, prior.prior_condition(states, mask, text)),
        net(image, t + 1, prior.prior_condition(states, mask, text)),
        net(image, t, prior.prior_condition(states, mask, text + 1)),
        net(image, t, prior.prior_condition(states + mask[..., None], mask, text)),
    ):
        assert (changed - out).abs().max() > 1e-3
    null = net(image, t, net.null_cond(3))  # no caption: the condition is unread
    assert null.shape == (3, 6) and (null - out).abs().max() > 1e-3


def test_the_prior_trains_and_samples_through_the_diffusion_code():
    from minigen.diffusion import NoiseSchedule, SamplerOptions, ddim_sample
    from minigen.diffusion.objectives import diffusion_loss

    net = make_net().train()
    image, _, text, states, mask = inputs()
    cond = prior.prior_condition(states, mask, text)
    schedule = NoiseSchedule.cosine(100)
    loss = diffusion_loss(
        net, schedule, image, "x0", cond, generator=torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert loss.item() > 0 and net.query.grad is not None
    options = SamplerOptions(objective="x0", cond=cond, guidance=2.0, clip=None)
    sample = ddim_sample(net.eval(), schedule, (3, 6), steps=5, options=options)
    assert sample.shape == (3, 6) and torch.isfinite(sample).all()


def test_the_prior_refuses_mismatched_inputs_and_scales_embeddings_to_unit_variance():
    net = make_net()
    image, t, text, states, mask = inputs()
    with pytest.raises(TypeError, match="cond must be TokenStates"):
        net(image, t, text)
    with pytest.raises(ValueError, match=r"x_t must be \(B, 6\)"):
        net(image[:, :4], t, prior.prior_condition(states, mask, text))
    unit = torch.nn.functional.normalize(torch.randn(20000, 64), dim=1)
    scaled = unit * prior.embedding_scale(64)
    assert abs(scaled.var(0).mean().item() - 1) < 0.03


def test_the_mlp_prior_starts_near_the_identity_and_checks_its_input():
    torch.manual_seed(0)
    mlp = prior.MLPPrior(8, 16)
    x = torch.randn(4, 8)
    assert mlp(x).shape == (4, 8)
    with torch.no_grad():
        mlp.net[2].weight.zero_()
        mlp.net[2].bias.zero_()
    assert torch.equal(mlp(x), x)  # the residual: text embedding in, the same out
    with pytest.raises(ValueError, match=r"text_embedding must be \(B, 8\)"):
        mlp(torch.zeros(4, 7))


def test_decoded_codes_encode_back_to_themselves_at_the_middle_of_their_bucket():
    x = gaussian_embeddings()
    q = prior.PCAQuantizer(x, dims=3, buckets=8)
    codes = q.encode(x)
    assert torch.equal(q.encode(q.decode(codes)), codes)
    coordinates = q.project(x)
    for d in range(3):
        for k in range(
            8
        ):  # each centre: the median of the training values in the bucket
            inside = coordinates[codes[:, d] == k, d]
            assert (
                abs(q.centres[d, k] - inside.median()) < 0.05 * inside.std() + 1e-3
            )


def test_rerank_keeps_the_candidate_with_the_largest_dot_product_per_caption():
    g = torch.Generator().manual_seed(0)
    candidates, text = (
        torch.randn(3, 5, 4, generator=g),
        torch.randn(5, 4, generator=g),
    )
    kept = prior.rerank(candidates, text)
    for b in range(5):  # brute force: every candidate of caption b
        dots = [float(candidates[k, b] @ text[b]) for k in range(3)]
        assert torch.equal(kept[b], candidates[dots.index(max(dots)), b])
    # the dot product, not the cosine: a longer candidate further off wins
    text = torch.tensor([[1.0, 0.0]])
    pair = torch.tensor(
        [[[0.6, 0.8]], [[3.0, 0.0]]]
    )  # cosine 0.6 vs 1, dot 0.6 vs 3
    assert torch.equal(prior.rerank(pair, text), torch.tensor([[3.0, 0.0]]))
    with pytest.raises(ValueError, match="candidates must be"):
        prior.rerank(candidates, torch.zeros(4, 4))


def make_ar():
    torch.manual_seed(0)
    return prior.ARPrior(embed_dim=6, dims=5, buckets=7, width=32, layers=2).eval()


def test_each_code_is_predicted_from_the_text_and_the_codes_before_it_only():
    ar = make_ar()
    g = torch.Generator().manual_seed(0)
    text, codes = (
        torch.randn(2, 6, generator=g),
        torch.randint(0, 7, (2, 5), generator=g),
    )
    logits = ar(text, codes)
    assert logits.shape == (2, 5, 7)
    for i in range(5):  # change code i: the logits of codes 0 .. i do not move
        changed = codes.clone()
        changed[:, i] = (changed[:, i] + 1) % 7
        moved = (ar(text, changed) - logits).abs().amax(dim=(0, 2))
        assert (moved[: i + 1] < 1e-6).all()
        assert i == 4 or (moved[i + 1 :] > 1e-6).all()
    assert (ar(text + 1, codes) - logits).abs().amax(dim=(0, 2)).min() > 1e-6
    # the training loss is the cross-entropy of every code
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 7), codes.reshape(-1)
    )
    assert torch.isfinite(loss)


def test_sampling_draws_each_code_from_its_conditional_softmax():
    ar = make_ar()
    text = torch.randn(1, 6, generator=torch.Generator().manual_seed(1)).expand(
        4000, 6
    )
    codes = ar.sample(text, torch.Generator().manual_seed(2))
    assert codes.shape == (4000, 5) and 0 <= codes.min() and codes.max() < 7
    first = torch.bincount(codes[:, 0], minlength=7).float() / 4000
    expected = ar(text[:1], codes[:1])[0, 0].softmax(
        -1
    )  # code 0 reads the text alone
    assert (first - expected).abs().max() < 0.03
    again = ar.sample(text, torch.Generator().manual_seed(2))
    assert torch.equal(again, codes)  # the generator decides every draw
    with pytest.raises(ValueError, match="codes must lie in"):
        ar(text[:1], torch.tensor([[7]]))

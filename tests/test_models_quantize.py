import math

import pytest
import torch
import torch.nn.functional as F

from t2i_lib.models.quantize import QuantizerConfig, VectorQuantizer, codebook_stats, kmeans


def _flat(z):  # (B, D, H, W) -> (B*H*W, D)
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def test_nearest_code_matches_brute_force_cdist():
    torch.manual_seed(0)
    vq = VectorQuantizer(QuantizerConfig(num_codes=37, dim=8)).eval()
    vq.codebook.data.normal_()  # spread the codes so the test is not dominated by ties near the origin
    z = torch.randn(2, 8, 5, 6)
    q, idx, loss, stats = vq(z)
    ref = torch.cdist(_flat(z), vq.codebook.detach()).argmin(1)  # (B*H*W,)
    assert idx.shape == (2, 5, 6) and idx.dtype == torch.int64
    assert torch.equal(idx.reshape(-1), ref)
    assert torch.allclose(_flat(q), vq.codebook.detach()[ref], atol=1e-6)
    # the loss is codebook + beta * commitment, both equal to the mean squared quantisation error
    mse = F.mse_loss(_flat(z), vq.codebook.detach()[ref])
    assert torch.allclose(loss, (1 + 0.25) * mse, rtol=1e-5)

    # the same vectors as a (B, N, D) sequence give the same codes
    vq_seq = VectorQuantizer(QuantizerConfig(num_codes=37, dim=8, channels_last=True)).eval()
    vq_seq.codebook.data.copy_(vq.codebook.data)
    seq = _flat(z).reshape(2, 30, 8)
    q2, idx2, _, _ = vq_seq(seq)
    assert idx2.shape == (2, 30) and torch.equal(idx2.reshape(-1), ref)
    assert torch.allclose(q2.reshape(-1, 8), vq.codebook.detach()[ref], atol=1e-6)


def test_straight_through_gradient_reaches_encoder_unchanged():
    torch.manual_seed(1)
    vq = VectorQuantizer(QuantizerConfig(num_codes=16, dim=4))
    vq.codebook.data.normal_()
    z = torch.randn(3, 4, 2, 2, requires_grad=True)
    w = torch.randn(3, 4, 2, 2)
    q = vq(z).quantized
    q.retain_grad()
    ((q ** 2) * w).sum().backward()  # a loss on q only (not the VQ loss)
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert torch.allclose(z.grad, q.grad)  # d loss/d z == d loss/d q: the identity in the backward pass
    assert vq.codebook.grad is None  # a loss on q alone does not move the codebook

    # ... whereas the VQ loss does: codebook term -> codebook, commitment term -> encoder
    z2 = torch.randn(3, 4, 2, 2, requires_grad=True)
    vq(z2).loss.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0
    assert z2.grad.abs().sum() > 0


def test_one_ema_update_equals_hand_computation():
    vq = VectorQuantizer(QuantizerConfig(num_codes=3, dim=2, ema=True, decay=0.5, eps=0.1, beta=0.25,
                                         channels_last=True))
    start = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    vq.codebook.data.copy_(start)
    vq.embed_avg.copy_(start)
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 1.0]]])  # (1, 3, 2): two vectors -> code 0, one -> code 1
    q, idx, loss, _ = vq.train()(z)
    assert idx.tolist() == [[0, 0, 1]]
    # cluster sizes: N <- 0.5 * 1 + 0.5 * counts, counts = [2, 1, 0]
    assert torch.allclose(vq.cluster_size, torch.tensor([1.5, 1.0, 0.5]))
    # sums: code 0 got (1,0)+(0,1) = (1,1); code 1 got (9,1); m <- 0.5 m + 0.5 sum
    assert torch.allclose(vq.embed_avg, torch.tensor([[0.5, 0.5], [9.5, 0.5], [0.0, 5.0]]))
    # Laplace smoothing: n = 3, N~ = (N + 0.1) / (3 + 3 * 0.1) * 3 = [16/11, 1, 6/11]
    expected = torch.tensor([[0.5 * 11 / 16, 0.5 * 11 / 16], [9.5, 0.5], [0.0, 5.0 * 11 / 6]])
    assert torch.allclose(vq.codebook.detach(), expected, atol=1e-6)
    # the forward value used the codes as they were when chosen; the loss is beta * commitment only
    assert torch.allclose(q[0], start[[0, 0, 1]])
    commit = ((z[0] - start[[0, 0, 1]]) ** 2).mean()
    assert torch.allclose(loss, 0.25 * commit)
    assert not vq.codebook.requires_grad  # EMA mode: the optimiser must not touch the codebook


def _blobs(n_per, centres, std, gen):
    x = torch.cat([c + std * torch.randn(n_per, centres.shape[1], generator=gen) for c in centres])
    return x[torch.randperm(len(x), generator=gen)]


def test_kmeans_init_puts_a_code_on_every_cluster():
    gen = torch.Generator().manual_seed(2)
    centres = torch.tensor([[8.0, 0, 0, 0], [0, 8, 0, 0], [0, 0, 8, 0], [0, 0, 0, 8], [-8, -8, 0, 0]])
    x = _blobs(100, centres, 0.2, gen)  # (500, 4)
    z = x.reshape(5, 100, 4)

    vq = VectorQuantizer(QuantizerConfig(num_codes=8, dim=4, kmeans_init=True, channels_last=True))
    assert not bool(vq.initialized)
    vq.eval()(z)
    assert not bool(vq.initialized)  # only a training batch initialises
    vq.train()(z)
    assert bool(vq.initialized)
    codes = vq.codebook.detach()
    d = torch.cdist(centres, codes)  # (5 clusters, 8 codes)
    assert (d.min(1).values < 0.5).all(), d.min(1).values  # every cluster has a code on it
    # ... and every code sits on some cluster (none wasted near the origin)
    assert (d.min(0).values < 1.5).all(), d.min(0).values

    # without k-means init, the codes start near the origin, far from every cluster
    plain = VectorQuantizer(QuantizerConfig(num_codes=8, dim=4, channels_last=True))
    plain.train()(z)
    assert (torch.cdist(centres, plain.codebook.detach()).min(1).values > 5).all()


def test_kmeans_function_recovers_separated_clusters():
    gen = torch.Generator().manual_seed(3)
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [0.0, -6.0]])
    x = _blobs(50, centres, 0.1, gen)
    found, counts = kmeans(x, 3, iters=10, generator=gen)
    assert torch.cdist(centres, found).min(1).values.max() < 0.1
    assert sorted(counts.tolist()) == [50.0, 50.0, 50.0]


@pytest.mark.parametrize("ema", [True, False])
def test_dead_code_restart_revives_unused_codes(ema):
    def usage_after_training(threshold):
        torch.manual_seed(4)
        vq = VectorQuantizer(QuantizerConfig(num_codes=32, dim=2, ema=ema, decay=0.9,
                                             dead_code_threshold=threshold, channels_last=True))
        opt = None if ema else torch.optim.Adam(vq.parameters(), lr=0.05)
        gen = torch.Generator().manual_seed(5)
        for _ in range(40):
            x = 20 + 10 * torch.rand(1, 1024, 2, generator=gen)  # data in [20, 30]^2, codes near the origin
            out = vq.train()(x)
            if opt is not None:
                opt.zero_grad()
                out.loss.backward()
                opt.step()
        test = 20 + 10 * torch.rand(1, 4096, 2, generator=gen)
        return vq.eval()(test).stats["usage"].item()

    assert usage_after_training(0.0) < 0.5  # collapse: a few codes take all the data
    assert usage_after_training(1.0) > 0.9  # restarts move the unused codes onto the data


def test_l2_normalized_codes_are_unit_vectors_and_chosen_by_cosine():
    torch.manual_seed(6)
    for ema in (False, True):
        vq = VectorQuantizer(QuantizerConfig(num_codes=20, dim=6, l2_normalize=True, ema=ema))
        vq.codebook.data.normal_()
        z = 3 * torch.randn(2, 6, 4, 4)
        vq.train()(z)  # an EMA step (or nothing) must keep the compared codes unit-norm
        q, idx, _, _ = vq.eval()(z)
        codes = vq._codes()
        assert torch.allclose(codes.norm(dim=1), torch.ones(20), atol=1e-5)
        assert torch.allclose(_flat(q).norm(dim=1), torch.ones(32), atol=1e-5)
        cos = F.normalize(_flat(z), dim=1) @ F.normalize(vq.codebook.detach(), dim=1).t()
        assert torch.equal(idx.reshape(-1), cos.argmax(1))


def test_factorized_codes_live_in_code_dim_and_project_back():
    torch.manual_seed(7)
    vq = VectorQuantizer(QuantizerConfig(num_codes=16, dim=32, code_dim=4, l2_normalize=True))
    assert vq.codebook.shape == (16, 4)
    z = torch.randn(2, 32, 3, 3, requires_grad=True)
    q, idx, loss, _ = vq(z)
    assert q.shape == z.shape
    low = F.normalize(vq.proj_in(_flat(z)), dim=1)  # (18, 4)
    ref = (low @ F.normalize(vq.codebook.detach(), dim=1).t()).argmax(1)
    assert torch.equal(idx.reshape(-1), ref)
    (q.square().sum() + loss).backward()
    assert z.grad.abs().sum() > 0  # straight-through reaches the encoder through both projections
    assert vq.proj_in.weight.grad.abs().sum() > 0 and vq.proj_out.weight.grad.abs().sum() > 0
    # decode_indices goes through the back-projection too
    assert torch.allclose(vq.decode_indices(idx), q.detach(), atol=1e-5)


def test_perplexity_is_exp_entropy_of_usage_histogram():
    vq = VectorQuantizer(QuantizerConfig(num_codes=4, dim=2, channels_last=True)).eval()
    codes = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    vq.codebook.data.copy_(codes)
    picks = [0, 0, 0, 1, 3, 3, 3, 3]  # histogram [3, 1, 0, 4]
    _, idx, _, stats = vq(codes[picks][None] + 0.01)
    assert idx.tolist() == [picks]
    p = [3 / 8, 1 / 8, 4 / 8]
    expected = math.exp(-sum(pi * math.log(pi) for pi in p))
    assert stats["perplexity"].item() == pytest.approx(expected, rel=1e-6)
    assert stats["usage"].item() == pytest.approx(0.75)
    assert codebook_stats(torch.tensor([5, 5, 5, 5]))["perplexity"].item() == pytest.approx(4.0)
    assert codebook_stats(torch.tensor([0, 9, 0, 0]))["perplexity"].item() == pytest.approx(1.0)


def test_decode_indices_round_trips_and_rejects_bad_tokens():
    torch.manual_seed(8)
    vq = VectorQuantizer(QuantizerConfig(num_codes=10, dim=3)).eval()
    vq.codebook.data.normal_()
    z = torch.randn(2, 3, 4, 5)
    q, idx, _, _ = vq(z)
    assert torch.allclose(vq.decode_indices(idx), q)
    assert torch.equal(vq(vq.decode_indices(idx)).indices, idx)  # decoding then re-encoding is stable
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        vq.decode_indices(torch.tensor([[[3, 10]]]))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        vq.decode_indices(torch.tensor([[[-1, 2]]]))
    with pytest.raises(ValueError, match="integer"):
        vq.decode_indices(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        vq.decode_indices(torch.zeros(2, 5, dtype=torch.long))


def test_wrong_input_shape_names_expected_and_received():
    vq = VectorQuantizer(QuantizerConfig(num_codes=8, dim=16))
    with pytest.raises(ValueError, match=r"\(B, 16, H, W\).*\(2, 8, 4, 4\)"):
        vq(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 16, H, W\).*\(2, 10, 16\).*channels_last"):
        vq(torch.randn(2, 10, 16))
    seq = VectorQuantizer(QuantizerConfig(num_codes=8, dim=16, channels_last=True))
    with pytest.raises(ValueError, match=r"\(B, N, 16\).*\(2, 16, 4, 4\)"):
        seq(torch.randn(2, 16, 4, 4))


def test_gradient_trained_codebook_reduces_quantisation_error():
    torch.manual_seed(9)
    gen = torch.Generator().manual_seed(9)
    centres = 3 * torch.randn(8, 4, generator=gen)
    vq = VectorQuantizer(QuantizerConfig(num_codes=8, dim=4, decay=0.9, dead_code_threshold=1.0,
                                         channels_last=True))
    opt = torch.optim.Adam(vq.parameters(), lr=0.05)
    losses = []
    for _ in range(150):
        x = _blobs(32, centres, 0.1, gen)[None]  # (1, 256, 4)
        out = vq.train()(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert sum(losses[-10:]) / 10 < 0.02 * sum(losses[:10]) / 10
    assert out.stats["perplexity"].item() > 7.5  # all 8 clusters have their own code


def test_autocast_does_not_change_the_chosen_codes():
    torch.manual_seed(10)
    vq = VectorQuantizer(QuantizerConfig(num_codes=64, dim=8)).eval()
    vq.codebook.data.normal_()
    z = torch.randn(2, 8, 6, 6)
    ref = vq(z).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
    assert torch.equal(out.indices, ref)


def test_quantizer_flavours_are_valid_switches():
    from t2i_lib.models.quantize import QUANTIZER_FLAVOURS, quantizer_flavour

    for name in QUANTIZER_FLAVOURS:
        VectorQuantizer(QuantizerConfig(num_codes=8, dim=4, **quantizer_flavour(name)))
    assert quantizer_flavour("fixed") == dict(kmeans_init=True, dead_code_threshold=2.0)
    assert quantizer_flavour("fixed", dead_code_threshold=1.0)["dead_code_threshold"] == 1.0
    quantizer_flavour("fixed")["kmeans_init"] = False  # a copy: the table is not changed
    assert QUANTIZER_FLAVOURS["fixed"]["kmeans_init"] is True
    with pytest.raises(ValueError, match="plain"):
        quantizer_flavour("nope")

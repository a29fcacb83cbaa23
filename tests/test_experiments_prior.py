"""Chapter 4's prior glue: encoding many Shapes images to code maps, held-out likelihood, sampling,
decoding and scoring."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from t2i_lib.data.shapes.dataset import ShapesDataset
from t2i_lib.data.shapes.scoring import score
from t2i_lib.experiments.prior import encode_images, nats_per_code, sample_and_score, shapes_code_maps
from t2i_lib.models.pixelcnn import GatedPixelCNN
from t2i_lib.models.vqvae import VQVAE, VQVAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vq():
    torch.manual_seed(0)
    m = VQVAE(VQVAEConfig.small(num_hiddens=16, num_residual_hiddens=8, embedding_dim=8, num_codes=16,
                                kmeans_init=True))
    ds = ShapesDataset(image_size=32, length=16, seed=5)
    with torch.no_grad():
        m.train()(torch.stack([ds[i]["image"] for i in range(16)]))  # k-means spreads the codes over real vectors
    return m.eval()


def test_encode_images_and_shapes_code_maps_agree_with_encode(vq):
    ds = ShapesDataset(image_size=32, split="val", length=40, seed=2)
    x = torch.stack([ds[i]["image"] for i in range(40)])
    want = vq.encode(x)
    assert len(torch.unique(want)) > 2  # a test with one code everywhere would prove little
    torch.testing.assert_close(encode_images(vq, x, batch_size=7), want)
    torch.testing.assert_close(encode_images(vq, ds, batch_size=16), want)  # a Dataset of dict items
    # items 10..39 of the split, drawn and encoded in batches of 8
    maps = shapes_code_maps(vq, 30, split="val", seed=2, start=10, batch_size=8)
    assert maps.shape == (30, 8, 8) and maps.dtype == torch.long
    torch.testing.assert_close(maps, want[10:])
    with pytest.raises(ValueError, match="positive"):
        shapes_code_maps(vq, 0)
    with pytest.raises(TypeError, match="Dataset"):
        encode_images(vq, 3)


def test_nats_per_code_is_the_mean_cross_entropy():
    torch.manual_seed(0)
    prior = GatedPixelCNN(num_codes=16, hidden=16, num_layers=2, out_hidden=32)
    codes = torch.randint(0, 16, (23, 8, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = F.cross_entropy(prior(codes), codes).item()
    assert nats_per_code(prior, codes, batch_size=5) == pytest.approx(want, rel=1e-5)
    assert prior.training  # the mode is restored
    # an untrained prior is close to uniform: about ln K nats per code
    assert abs(want - math.log(16)) < 0.5
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        nats_per_code(prior, codes[0])


def test_a_prior_trained_on_code_maps_generalises_and_its_samples_decode(vq):
    """Train a small PixelCNN on real code maps: held-out nats fall well below uniform and stay close to
    the training nats (the gap is what memorising would open), and sample_and_score returns the decoded
    images of exactly the sampled maps, scored by the Shapes scorer."""
    train_maps = shapes_code_maps(vq, 2000, seed=0)
    val_maps = shapes_code_maps(vq, 300, split="val", seed=0)
    torch.manual_seed(0)
    prior = GatedPixelCNN(num_codes=16, hidden=16, num_layers=2, out_hidden=32, first_kernel_size=5)
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss, _ = prior.loss(train_maps[torch.randint(0, len(train_maps), (64,), generator=g)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    tr, va = nats_per_code(prior, train_maps[:300]), nats_per_code(prior, val_maps)
    print(f"train {tr:.3f} val {va:.3f} nats per code (uniform: {math.log(16):.3f})")
    assert va < 0.6 * math.log(16)
    assert abs(va - tr) < 0.1

    out = sample_and_score(prior, vq, 6, generator=torch.Generator().manual_seed(0), batch_size=4)
    assert out.codes.shape == (6, 8, 8) and out.images.shape == (6, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(out.images, vq.decode(out.codes))
    assert out.valid == [score(img).valid for img in out.images]
    assert out.valid_rate == sum(out.valid) / 6
    labels = out.labels()
    assert all(lab.startswith("rejected: ") != v for lab, v in zip(labels, out.valid))
    again = sample_and_score(prior, vq, 6, generator=torch.Generator().manual_seed(0), batch_size=4)
    assert torch.equal(again.codes, out.codes)  # a fixed generator gives the same samples


def test_prior_and_vqvae_must_agree_on_the_codebook_size(vq):
    prior = GatedPixelCNN(num_codes=32, hidden=8, num_layers=1, out_hidden=8)
    with pytest.raises(ValueError, match="32 codes but the tokenizer's codebook has 16"):
        sample_and_score(prior, vq, 2)

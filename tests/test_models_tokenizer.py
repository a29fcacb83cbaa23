"""One image-tokenizer interface: each of the four tokenizers (and a toy one that is not even an nn.Module)
meets it, and works with every consumer of tokens: the token cache, the PixelCNN prior helpers, the
codebook explorer and the token statistics."""

import warnings

import numpy as np
import pytest
import torch

from t2i_lib.data.shapes.dataset import ShapesDataset
from t2i_lib.data.token_cache import cache_tokens, load_tokens
from t2i_lib.experiments.prior import encode_images, sample_and_score, shapes_code_maps
from t2i_lib.experiments.token_stats import token_statistics
from t2i_lib.metrics.codebook import codebook_usage
from t2i_lib.models.checks import InputDtypeError
from t2i_lib.models.dvae import DVAE, DVAEConfig
from t2i_lib.models.openai_dvae import OpenAIDVAE, OpenAIDVAEConfig
from t2i_lib.models.pixelcnn import GatedPixelCNN
from t2i_lib.models.tokenizer import ImageTokenizer, num_codes_of, token_grid, tokenizer_image_size
from t2i_lib.models.vqvae import VQVAE, ResNetVQVAE, ResNetVQVAEConfig, VQVAEConfig
from t2i_lib.viz.widgets.codebook import StaticCodebookExplorer, codebook_explorer

pytestmark = pytest.mark.usefixtures("one_thread")

K = 16
S = 32


class ToyTokenizer:
    """Not an nn.Module, no parameters, no cfg: the mean brightness of each 8x8 patch in K levels."""

    num_codes = K

    def grid_size(self, image_size):
        return token_grid(image_size, 8, None, "ToyTokenizer")

    def encode(self, images):
        b, c, h, w = images.shape
        m = images.mean(1).reshape(b, h // 8, 8, w // 8, 8).mean((2, 4))  # (B, h/8, w/8)
        return (m * K).long().clamp(0, K - 1)

    def decode(self, tokens):
        img = (tokens.float() + 0.5) / K
        return img.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, None].expand(-1, 3, -1, -1)


def _build(name):
    torch.manual_seed(0)
    if name == "vqvae":
        return VQVAE(VQVAEConfig.small(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1,
                                       embedding_dim=8, num_codes=K, image_size=S))
    if name == "resnet_vqvae":
        return ResNetVQVAE(ResNetVQVAEConfig(image_size=S, trunk_until="layer1", embedding_dim=8, num_codes=K,
                                             decoder_width=16, pretrained=False))
    if name == "dvae":
        return DVAE(DVAEConfig.small(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, embedding_dim=8,
                                     num_codes=K, image_size=S))
    if name == "openai_dvae":
        return OpenAIDVAE(OpenAIDVAEConfig(n_hid=16, n_blk_per_group=1, num_codes=K, n_init=8))
    return ToyTokenizer()


NAMES = ["vqvae", "resnet_vqvae", "dvae", "openai_dvae", "toy"]
GRIDS = {"vqvae": (8, 8), "resnet_vqvae": (8, 8), "dvae": (8, 8), "openai_dvae": (4, 4), "toy": (4, 4)}
FIXED_SIZE = {"vqvae", "resnet_vqvae", "dvae"}  # the others need image_size= passed


@pytest.fixture(scope="module", params=NAMES)
def tok(request):
    return request.param, _build(request.param)


@pytest.fixture(scope="module")
def images():
    ds = ShapesDataset(image_size=S, length=6, seed=3)
    return torch.stack([ds[i]["image"] for i in range(6)])  # (6, 3, 32, 32)


def _size_kw(name):
    return {} if name in FIXED_SIZE else {"image_size": S}


# ----------------------------------------------------------------------------- the interface itself

def test_each_tokenizer_meets_the_interface(tok, images):
    name, t = tok
    assert isinstance(t, ImageTokenizer)
    assert isinstance(t.num_codes, int) and t.num_codes == K
    assert t.grid_size(S) == GRIDS[name] and t.grid_size((S, S)) == GRIDS[name]
    codes = t.encode(images)
    assert codes.dtype == torch.int64 and tuple(codes.shape) == (6, *GRIDS[name])
    assert int(codes.min()) >= 0 and int(codes.max()) < K
    out = t.decode(codes)
    assert tuple(out.shape) == (6, 3, S, S) and out.min() >= 0 and out.max() <= 1
    if name != "toy":
        assert t.downsample_factor == S // GRIDS[name][0] and isinstance(t.embedding_dim, int)
        assert t.image_size == (S if name in FIXED_SIZE else None)


def test_encode_has_no_side_effects_in_training_mode(tok, images):
    name, t = tok
    if name == "toy":
        pytest.skip("no state")
    t.train()
    before = {k: v.clone() for k, v in t.state_dict().items()}
    t.encode(images)
    assert t.training  # the mode is put back
    assert all(torch.equal(before[k], v) for k, v in t.state_dict().items())  # no statistics moved
    t.eval()


def test_each_tokenizer_reports_bad_inputs_with_the_same_messages(tok, images):
    name, t = tok
    if name == "toy":
        pytest.skip("a user's tokenizer checks what it likes")
    cls = type(t).__name__
    h, w = GRIDS[name]
    with pytest.raises(ValueError, match=rf"{cls}\.decode: token indices must be in \[0, 15\] \(num_codes=16.*"
                                         rf"received values from 0 to 16, outside \[0, 15\]"):
        t.decode(torch.cat([torch.zeros(1, h, w - 1, dtype=torch.long), torch.full((1, h, 1), 16)], 2))
    with pytest.raises(InputDtypeError, match=rf"{cls}\.decode expects integer tokens"):
        t.decode(torch.zeros(1, h, w))
    with pytest.raises(ValueError, match=rf"{cls}\.decode expects token indices of shape \(B, .*received shape "
                                         rf"\({h}, {w}\).*unsqueeze"):
        t.decode(torch.zeros(h, w, dtype=torch.long))
    with pytest.raises(InputDtypeError, match=rf"{cls}\.encode expects a floating-point.*x\.float\(\) / 255"):
        t.encode((images * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=rf"{cls}\.encode expects images of shape \(B, 3, .*received shape "
                                         rf"\(3, 32, 32\).*unsqueeze"):
        t.encode(images[0])
    if name in FIXED_SIZE:
        with pytest.raises(ValueError, match=r"encodes 32 x 32 images only"):
            t.grid_size(64)
    else:
        with pytest.raises(ValueError, match=r"positive multiples of its downsample_factor 8; received image_size=30"):
            t.grid_size(30)


# ----------------------------------------------------------------------------- every consumer

def test_cache_tokens_takes_any_tokenizer(tok, images, tmp_path):
    name, t = tok
    dataset = list(images)  # a Dataset of image tensors
    cache = cache_tokens(t, dataset, tmp_path / f"{name}.npy", batch_size=4, progress=False)
    assert cache.num_codes == K and cache.tokens.shape == (6, *GRIDS[name])
    np.testing.assert_array_equal(load_tokens(tmp_path / f"{name}.npy"), t.encode(images).cpu().numpy())
    # the positional form the notebooks use: an encode function and num_codes
    again = cache_tokens(t.encode, dataset, tmp_path / f"{name}.npy", num_codes=t.num_codes, progress=False)
    assert again.reused
    with pytest.raises(ValueError, match=r"num_codes=8 disagrees with the tokenizer's num_codes=16"):
        cache_tokens(t, dataset, tmp_path / "other.npy", num_codes=8, progress=False)


def test_prior_helpers_take_any_tokenizer(tok, images):
    name, t = tok
    want = t.encode(images).cpu()
    torch.testing.assert_close(encode_images(t, images, batch_size=4), want)
    maps = shapes_code_maps(t, 3, seed=3, batch_size=2, **_size_kw(name))
    torch.testing.assert_close(maps, want[:3])  # the same Shapes items as the fixture's images
    prior = GatedPixelCNN(num_codes=K, hidden=8, num_layers=1, out_hidden=8)
    out = sample_and_score(prior, t, 2, generator=torch.Generator().manual_seed(0), **_size_kw(name))
    assert tuple(out.codes.shape) == (2, *GRIDS[name]) and tuple(out.images.shape) == (2, 3, S, S)
    torch.testing.assert_close(out.images, t.decode(out.codes).float().cpu())
    assert len(out.results) == 2 and 0 <= out.valid_rate <= 1


def test_codebook_explorer_takes_any_tokenizer(tok, images, monkeypatch):
    monkeypatch.setenv("T2I_STATIC_WIDGETS", "1")
    name, t = tok
    ex = codebook_explorer(t, images[:2], n_codes=2, scale=1)
    assert isinstance(ex, StaticCodebookExplorer)
    codes = t.encode(images[:2]).cpu()
    assert all(0 <= c < K for c in ex.codes) and ex.masks.shape[1:] == (2, *GRIDS[name])
    assert int(ex.counts[0]) == int((codes == ex.codes[0]).sum())
    assert ex.frame_shape == (S, 3 * S + 2 * 6, 3) and "t2i-widget-fallback" in ex.html


def test_token_statistics_take_any_tokenizer(tok, images):
    name, t = tok
    codes = t.encode(images).cpu()
    by_tokenizer, by_k = token_statistics(codes, t), token_statistics(codes, K)
    assert by_tokenizer.num_codes == K
    np.testing.assert_array_equal(by_tokenizer.counts, by_k.counts)
    assert codebook_usage(codes, t) == codebook_usage(codes, K)


# ----------------------------------------------------------------------------- helpers and old names

def test_helpers():
    assert num_codes_of(7) == 7 and num_codes_of(ToyTokenizer()) == K
    with pytest.raises(TypeError, match="int or a tokenizer"):
        num_codes_of("16")
    with pytest.raises(ValueError, match="pass image_size="):
        tokenizer_image_size(ToyTokenizer())
    assert tokenizer_image_size(ToyTokenizer(), 64) == 64
    assert token_grid((32, 16), 8, None, "T") == (4, 2)
    assert not isinstance(object(), ImageTokenizer)


def test_deprecated_names_still_work_and_warn(images):
    vq, oa = _build("vqvae"), _build("openai_dvae")
    codes = vq.encode(images)
    with pytest.warns(DeprecationWarning, match="grid_size"):
        assert vq.latent_size == 8
    with pytest.warns(DeprecationWarning, match=r"decode\(tokens\)"):
        torch.testing.assert_close(vq.decode_indices(codes), vq.decode(codes))
    with pytest.warns(DeprecationWarning, match="num_codes"):
        assert oa.vocab_size == K
    with pytest.warns(DeprecationWarning, match="downsample_factor"):
        assert oa.downsample == 8
    t = oa.encode(images)
    with pytest.warns(DeprecationWarning, match=r"decode\(tokens\)"):
        torch.testing.assert_close(oa.decode_indices(t), oa.decode(t))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names never warn
        vq.grid_size(), vq.decode(codes), oa.num_codes, oa.downsample_factor, oa.decode(t)

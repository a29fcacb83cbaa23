"""Chapter 5's token cache (interrupt and resume, reuse, refusals, uint16) and token statistics (exact
mutual information on constructed grids, against scikit-learn on random ones), plus the figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from t2i_lib.experiments.token_stats import mutual_information_bits, token_statistics
from t2i_lib.data.token_cache import TokenCacheError, cache_tokens, fingerprint, load_tokens, token_dtype

pytestmark = pytest.mark.usefixtures("one_thread")

K = 50


class DictImages(Dataset):
    """Items like Shapes': dict(image=(3, 8, 8), caption=str)."""

    def __init__(self, n=37, seed=0):
        self.x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "caption": f"image {i}"}


class Encoder:
    """A deterministic 'tokenizer': 2x2 average pooling, quantised to K levels. Counts its calls and can be
    told to fail after a number of batches (a crash, a Ctrl-C, a lost Colab session)."""

    def __init__(self, fail_after=None, exc=RuntimeError):
        self.calls, self.fail_after, self.exc = 0, fail_after, exc

    def __call__(self, x):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise self.exc("simulated interruption")
        self.calls += 1
        pooled = torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), 2)[:, 0]  # (B, 4, 4)
        return (pooled * K).long().clamp(0, K - 1)


@pytest.fixture
def data():
    return DictImages()


def test_uninterrupted_cache_is_reused_without_encoding(tmp_path, data):
    path = tmp_path / "tok.npy"
    enc = Encoder()
    cache = cache_tokens(enc, data, path, num_codes=K, batch_size=8, fingerprint="a", progress=False)
    assert enc.calls == 5 and cache.rows_encoded == 37 and cache.resumed_from == 0
    assert cache.tokens.shape == (37, 4, 4) and cache.tokens.dtype == np.uint16
    assert cache.tokens_per_s > 0 and not cache.reused
    expected = Encoder()(data.x).numpy()
    np.testing.assert_array_equal(cache.tokens, expected)
    meta = json.loads((tmp_path / "tok.npy.json").read_text())
    assert meta["rows_done"] == 37 and meta["shape"] == [37, 4, 4] and meta["num_codes"] == K

    again = Encoder()
    cache2 = cache_tokens(again, data, path, num_codes=K, batch_size=8, fingerprint="a", progress=False)
    assert again.calls == 0 and cache2.reused and math.isnan(cache2.tokens_per_s)
    ro = load_tokens(path)
    np.testing.assert_array_equal(ro, expected)
    with pytest.raises(ValueError, match="read-only"):
        ro[0, 0, 0] = 1


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_run_resumes_and_matches(tmp_path, data, exc):
    reference = cache_tokens(Encoder(), data, tmp_path / "ref.npy", num_codes=K, batch_size=8, progress=False)
    path = tmp_path / "tok.npy"
    with pytest.raises(exc, match="simulated"):
        # commit_every_s=1e9: progress is committed only by the final commit that runs on the way out
        cache_tokens(Encoder(fail_after=3, exc=exc), data, path, num_codes=K, batch_size=8, progress=False,
                       commit_every_s=1e9)
    assert json.loads((tmp_path / "tok.npy.json").read_text())["rows_done"] == 24
    with pytest.raises(TokenCacheError, match="unfinished: 24 of 37"):
        load_tokens(path)
    enc = Encoder()
    cache = cache_tokens(enc, data, path, num_codes=K, batch_size=8, progress=False)
    assert enc.calls == 2 and cache.resumed_from == 24 and cache.rows_encoded == 13  # rows 24..36 only
    np.testing.assert_array_equal(cache.tokens, reference.tokens)
    np.testing.assert_array_equal(load_tokens(path), reference.tokens)


def test_mismatches_are_refused_with_the_fix(tmp_path, data):
    path = tmp_path / "tok.npy"
    cache_tokens(Encoder(), data, path, num_codes=K, batch_size=8, fingerprint="enc-1", progress=False)
    with pytest.raises(TokenCacheError, match=r"fingerprint: cache has 'enc-1', this call 'enc-2'(.|\n)*overwrite=True"):
        cache_tokens(Encoder(), data, path, num_codes=K, batch_size=8, fingerprint="enc-2", progress=False)
    with pytest.raises(TokenCacheError, match=r"num_codes: cache has 50, this call 64"):
        cache_tokens(Encoder(), data, path, num_codes=64, batch_size=8, fingerprint="enc-1", progress=False)
    with pytest.raises(TokenCacheError, match=r"num_rows: cache has 37, this call 20"):
        cache_tokens(Encoder(), DictImages(20), path, num_codes=K, batch_size=8, fingerprint="enc-1", progress=False)
    enc = Encoder()
    cache = cache_tokens(enc, DictImages(20, seed=1), path, num_codes=K, batch_size=8, fingerprint="enc-2",
                           overwrite=True, progress=False)
    assert enc.calls == 3 and cache.tokens.shape == (20, 4, 4)
    # a stray .npy without its progress file is not trusted
    stray = tmp_path / "stray.npy"
    np.save(stray, np.zeros((37, 4, 4), np.uint16))
    with pytest.raises(TokenCacheError, match="no progress file"):
        cache_tokens(Encoder(), data, stray, num_codes=K, progress=False)


def test_bad_encoder_outputs_raise(tmp_path, data):
    with pytest.raises(ValueError, match=r"values from 50 to 50.*\[0, 49\]"):
        cache_tokens(lambda x: torch.full((x.shape[0], 4, 4), 50), data, tmp_path / "a.npy", num_codes=K,
                       progress=False)
    with pytest.raises(ValueError, match=r"shape \(B, h, w\)"):
        cache_tokens(lambda x: torch.zeros(x.shape[0], 16, dtype=torch.long), data, tmp_path / "b.npy",
                       num_codes=K, progress=False)
    with pytest.raises(ValueError, match=r"\.npy"):
        cache_tokens(Encoder(), data, tmp_path / "c.bin", num_codes=K, progress=False)


def test_uint16_round_trip_up_to_k_minus_1(tmp_path):
    k = 8192
    assert token_dtype(k) == np.uint16 and token_dtype(65536) == np.uint16 and token_dtype(65537) == np.int32
    ids = torch.arange(k).reshape(8, 32, 32)  # every index 0 .. 8191 once
    cache = cache_tokens(lambda x: x[:, 0].long(), TensorDataset(ids[:, None]), tmp_path / "t.npy", num_codes=k,
                           batch_size=3, progress=False)
    assert cache.tokens.dtype == np.uint16 and cache.tokens.max() == k - 1
    assert torch.equal(torch.from_numpy(np.asarray(load_tokens(tmp_path / "t.npy")).astype(np.int64)), ids)
    big = torch.tensor([[[0, 70000]]])
    c2 = cache_tokens(lambda x: x[:, 0].long(), TensorDataset(big[:, None]), tmp_path / "u.npy", num_codes=70001,
                        progress=False)
    assert c2.tokens.dtype == np.int32 and c2.tokens[0, 0, 1] == 70000


def test_fingerprint_tracks_weights():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    assert fingerprint(a, "x") == fingerprint(a, "x")
    assert fingerprint(a, "x") != fingerprint(b, "x") and fingerprint(a, "x") != fingerprint(a, "y")


# ---------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------

def test_mutual_information_exact_on_constructed_grids():
    # Every image constant, one image per code value (K = 4): a neighbour determines the token, and
    # MI = H = log2 4 = 2 bits in both directions.
    const = np.repeat(np.arange(4), 9).reshape(4, 3, 3)
    st = token_statistics(const, 4)
    assert st.mi_right_bits == pytest.approx(2.0) and st.mi_below_bits == pytest.approx(2.0)
    assert st.same_right == 1.0 and st.chance_same == pytest.approx(0.25)
    assert st.perplexity == pytest.approx(4.0) and st.usage == 1.0
    # 1 x 2 images listing every (left, right) pair once: the joint is the product of the marginals, MI = 0;
    # there are no vertical neighbours at all.
    pairs = np.array([[[a, b]] for a in range(5) for b in range(5)])  # (25, 1, 2)
    st = token_statistics(pairs, 5)
    assert st.mi_right_bits == pytest.approx(0.0, abs=1e-12) and math.isnan(st.mi_below_bits)
    assert st.same_right == pytest.approx(0.2) and st.chance_same == pytest.approx(0.2)
    # Rows [0, 1] and [1, 0] with equal counts: right neighbour = 1 - token, MI = 1 bit; vertical: columns
    # constant, MI = 1 bit. Unused codes (K = 6) change nothing but the usage.
    g = np.array([[[0, 1], [0, 1]], [[1, 0], [1, 0]]])
    st = token_statistics(g, 6)
    assert st.mi_right_bits == pytest.approx(1.0) and st.mi_below_bits == pytest.approx(1.0)
    assert st.same_right == 0.0 and st.same_below == 1.0 and st.usage == pytest.approx(2 / 6)


def test_mutual_information_matches_scikit_learn():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(0)
    a = rng.integers(0, 30, 5000)
    b = (a + rng.integers(0, 3, 5000)) % 30  # strongly dependent
    assert mutual_information_bits(a, b) == pytest.approx(mutual_info_score(a, b) / math.log(2), rel=1e-9)
    with pytest.raises(ValueError, match="pair up"):
        mutual_information_bits(a, b[:10])


def test_statistics_errors():
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        token_statistics(np.zeros((4, 4)), 8)
    with pytest.raises(ValueError, match=r"\[0, 7\].*to 8"):
        token_statistics(np.full((1, 2, 2), 8), 8)


def test_figures_draw():
    from t2i_lib.viz.plots.tokens import plot_dvae_training, plot_token_maps, plot_token_statistics
    from t2i_lib.train.trainer import History

    rng = np.random.default_rng(0)
    toks = rng.integers(0, 16, (10, 4, 4))
    st = token_statistics(toks, 16)
    fig = plot_token_statistics({"a": st, "b": token_statistics(toks[:, :, ::-1], 16)}, title="t")
    assert len(fig.axes) == 2
    fig = plot_token_maps(torch.rand(3, 3, 8, 8), toks, 16)
    assert len(fig.axes) == 6
    h = History()
    for s in range(1, 4):
        h.log(s, "train", 1.0 / s, 1e-3, mse=0.1 / s, tau=1.0 / s, beta=s, perplexity=2.0)
    fig = plot_dvae_training(h, vq_history=h)
    assert len(fig.axes) == 4  # three panels and the twin axis for beta


def test_lose_session_after_interrupts_and_the_cache_resumes(tmp_path):
    from t2i_lib.data.token_cache import SessionLost, cache_tokens, lose_session_after, read_progress

    images = torch.rand(10, 3, 4, 4)
    encode = lambda x: (x[:, 0] * 7).long()  # noqa: E731  (B, 4, 4) tokens in [0, 8)
    lossy = lose_session_after(encode, 2)
    path = tmp_path / "t.npy"
    assert read_progress(path) is None
    with pytest.raises(SessionLost):
        cache_tokens(lossy, images, path, num_codes=8, batch_size=2, progress=False)
    assert lossy.calls == 3 and read_progress(path)["rows_done"] == 4
    done = cache_tokens(encode, images, path, num_codes=8, batch_size=2, progress=False)
    assert np.array_equal(done.tokens, encode(images).numpy())
    with pytest.raises(ValueError, match=">= 0"):
        lose_session_after(encode, -1)

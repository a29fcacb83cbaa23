"""OpenAI's dVAE: our re-implementation against the reference package, and the safe loading of its pickles.

The released files are ``torch.save`` of whole ``dall_e.Encoder`` / ``dall_e.Decoder`` objects. The tests
make small files of exactly that kind with the reference package (and its modules' real classes), so
the loader is exercised on the real format without touching the network.
"""

import dataclasses
import pathlib

import pytest
import torch
import torch.nn.functional as F

dall_e = pytest.importorskip("dall_e")

from t2i_lib.storage.checkpoint import CheckpointError
from t2i_lib.storage.download import DownloadError, sha256_file
from t2i_lib.models import openai_dvae as od
from t2i_lib.models.openai_dvae import OPENAI_DVAE_FILES, DVAEDecoder, DVAEEncoder, OpenAIDVAE, OpenAIDVAEConfig, convert_pickle, fix_upsample, map_pixels, unmap_pixels

pytestmark = pytest.mark.usefixtures("one_thread")

# The smallest sizes the reference package accepts (n_hid >= 64, vocab_size >= 512), 2 blocks per group
# as in the release, so both kinds of identity path (conv and nn.Identity) occur.
SMALL = dict(n_hid=64, n_blk_per_group=2, num_codes=512, n_init=32)
CFG = OpenAIDVAEConfig(**SMALL)


@pytest.fixture(scope="module")
def ref():
    torch.manual_seed(0)
    enc = dall_e.Encoder(n_hid=64, n_blk_per_group=2, vocab_size=512)
    dec = dall_e.Decoder(n_hid=64, n_blk_per_group=2, vocab_size=512, n_init=32)
    # The reference initialises biases to zero; random biases make the comparison check them too.
    with torch.no_grad():
        for m in (enc, dec):
            for name, p in m.named_parameters():
                if name.endswith(".b"):
                    p.normal_(std=0.1)
    return enc.eval(), dec.eval()


@pytest.fixture(scope="module")
def pickles(ref, tmp_path_factory):
    """The released format: torch.save of the whole modules; (encoder path, decoder path) per format."""
    import torch.serialization as ts

    real_source = ts.get_source_lines_and_file

    def older_source(obj, *args, **kwargs):  # as if saved by other versions of torch and dall_e
        lines, lineno, file = real_source(obj, *args, **kwargs)
        return ["# an older version of this class\n", *lines], lineno, file

    out = {}
    for zipped in (True, False):
        d = tmp_path_factory.mktemp("zip" if zipped else "legacy")
        enc_p, dec_p = d / "encoder.pkl", d / "decoder.pkl"
        # The pre-1.6 format also stores each module class's source code (compared at load time).
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ts, "get_source_lines_and_file", older_source)
            torch.save(ref[0], enc_p, _use_new_zipfile_serialization=zipped)
            torch.save(ref[1], dec_p, _use_new_zipfile_serialization=zipped)
        out[zipped] = (enc_p, dec_p)
    return out


def _one_hot(tokens, v):
    return F.one_hot(tokens, v).permute(0, 3, 1, 2).float()  # (B, V, h, w)


# ------------------------------------------------------------------------------------------------
# The architecture equals the reference
# ------------------------------------------------------------------------------------------------

def test_released_architecture_has_the_reference_names_and_shapes():
    # Built on the meta device: the full-size models cost no memory or time, only their shapes exist.
    with torch.device("meta"):
        ours = OpenAIDVAE()
    ref_enc = dall_e.Encoder(device=torch.device("meta"))
    ref_dec = dall_e.Decoder(device=torch.device("meta"))
    for mine, theirs in ((ours.encoder, ref_enc), (ours.decoder, ref_dec)):
        assert {k: tuple(v.shape) for k, v in mine.state_dict().items()} == \
               {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert ours.num_codes == 8192 and ours.downsample_factor == 8 and ours.embedding_dim == 128


@pytest.mark.parametrize("zipped", [True, False], ids=["zip-format", "legacy-format"])
def test_convert_pickle_loads_into_our_modules_and_outputs_match(ref, pickles, zipped):
    ref_enc, ref_dec = ref
    enc_p, dec_p = pickles[zipped]
    enc_sd = convert_pickle(enc_p, sha256_file(enc_p), expect="dall_e.encoder.Encoder")
    dec_sd = convert_pickle(dec_p, sha256_file(dec_p), expect="dall_e.decoder.Decoder")
    for sd, theirs in ((enc_sd, ref_enc), (dec_sd, ref_dec)):
        expected = theirs.state_dict()
        assert set(sd) == set(expected)
        assert all(torch.equal(sd[k], expected[k]) for k in sd)
        assert all(type(t) is torch.Tensor for t in sd.values())  # plain tensors, no stand-ins or Parameters

    enc, dec = DVAEEncoder(CFG), DVAEDecoder(CFG)
    enc.load_state_dict(enc_sd, strict=True)
    dec.load_state_dict(dec_sd, strict=True)
    torch.manual_seed(1)
    x = map_pixels(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        assert torch.allclose(enc(x), ref_enc(x), atol=1e-5, rtol=1e-5)  # (2, 512, 4, 4) logits
        tokens = torch.randint(0, 512, (2, 4, 4))
        want = ref_dec(_one_hot(tokens, 512))  # (2, 6, 32, 32)
        assert torch.allclose(dec(_one_hot(tokens, 512)), want, atol=1e-5, rtol=1e-5)
        assert torch.allclose(dec.from_indices(tokens), want, atol=1e-5, rtol=1e-5)  # lookup == one-hot conv


def test_full_tokenizer_matches_the_reference_pipeline(ref, pickles):
    """encode = argmax of the encoder's logits on mapped pixels; decode = sigmoid, unmap (the usage notebook)."""
    ref_enc, ref_dec = ref
    enc_p, dec_p = pickles[True]
    model = OpenAIDVAE(CFG)
    model.encoder.load_state_dict(convert_pickle(enc_p, sha256_file(enc_p)))
    model.decoder.load_state_dict(convert_pickle(dec_p, sha256_file(dec_p)))
    torch.manual_seed(2)
    images = torch.rand(3, 3, 32, 48)  # H and W need only be multiples of 8
    with torch.no_grad():
        want_tokens = torch.argmax(ref_enc(dall_e.map_pixels(images)), dim=1)
        want_images = dall_e.unmap_pixels(torch.sigmoid(ref_dec(_one_hot(want_tokens, 512))[:, :3]))
    tokens = model.encode(images)
    assert tokens.dtype == torch.int64 and tokens.shape == (3, 4, 6)
    assert torch.equal(tokens, want_tokens)
    assert torch.allclose(model.decode(tokens), want_images, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Safety: the hash is checked first, and nothing outside the allow-list is ever called
# ------------------------------------------------------------------------------------------------

class _Trap:
    """Unpickling this creates a file: the harmless stand-in for the code a tampered pickle would run."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


def _trap_file(tmp_path, marker, zipped=True):
    p = tmp_path / f"trap_{'zip' if zipped else 'legacy'}.pkl"
    torch.save({"w": torch.zeros(3), "payload": _Trap(marker)}, p, _use_new_zipfile_serialization=zipped)
    return p


def test_the_trap_really_runs_code_when_unpickled_the_unsafe_way(tmp_path):
    marker = tmp_path / "pwned"
    torch.load(_trap_file(tmp_path, marker), weights_only=False)
    assert marker.exists()  # so the tests below, where it must not appear, can fail


def test_wrong_hash_raises_before_unpickling(tmp_path, pickles):
    marker = tmp_path / "pwned"
    trap = _trap_file(tmp_path, marker)
    wrong = "0" * 64
    with pytest.raises(CheckpointError) as err:
        convert_pickle(trap, wrong)
    msg = str(err.value)
    assert wrong in msg and sha256_file(trap) in msg and "Nothing was unpickled" in msg
    assert not marker.exists()
    # A genuine dall_e pickle with a wrong hash is refused just the same.
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        convert_pickle(pickles[True][0], sha256_file(pickles[True][1]))
    with pytest.raises(CheckpointError, match="needs the expected SHA-256"):
        convert_pickle(pickles[True][0], None)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip-format", "legacy-format"])
def test_disallowed_globals_are_refused_even_with_the_right_hash(tmp_path, zipped):
    marker = tmp_path / "pwned"
    trap = _trap_file(tmp_path, marker, zipped)
    with pytest.raises(CheckpointError, match="Nothing from the file was executed") as err:
        convert_pickle(trap, sha256_file(trap))
    assert "getattr" in str(err.value)  # the first global the payload needs (pickle's route to Path.touch)
    assert "add_safe_globals" not in str(err.value)  # we do not pass on the advice to allow-list it
    assert not marker.exists()
    # A real module of a class outside the allow-list (not part of the dVAE) is refused too.
    other = tmp_path / "linear.pkl"
    torch.save(torch.nn.Linear(2, 2), other, _use_new_zipfile_serialization=zipped)
    with pytest.raises(CheckpointError, match="torch.nn.modules.linear.Linear"):
        convert_pickle(other, sha256_file(other))


def test_expect_checks_which_network_the_file_holds(pickles):
    enc_p = pickles[True][0]
    with pytest.raises(CheckpointError, match="holds a dall_e.encoder.Encoder, not the expected dall_e.decoder"):
        convert_pickle(enc_p, sha256_file(enc_p), expect="dall_e.decoder.Decoder")


def test_fix_upsample_revives_upsample_layers_from_old_pickles(ref, pickles):
    _, ref_dec = ref
    old = torch.load(pickles[True][1], weights_only=False)  # the classic, unsafe load of our own test file
    ups = [m for m in old.modules() if isinstance(m, torch.nn.Upsample)]
    assert len(ups) == 3
    for m in ups:  # what an Upsample pickled by torch < 1.11 looks like after unpickling
        del m.__dict__["recompute_scale_factor"]
    z = _one_hot(torch.randint(0, 512, (1, 4, 4)), 512)
    with pytest.raises(AttributeError, match="recompute_scale_factor"):
        old(z)
    assert fix_upsample(old) is old
    with torch.no_grad():
        assert torch.allclose(old(z), ref_dec(z))


# ------------------------------------------------------------------------------------------------
# Pixel mapping, shapes, ranges, errors
# ------------------------------------------------------------------------------------------------

def test_map_unmap_round_trip_and_reference_values():
    x = torch.rand(2, 3, 8, 8)
    m = map_pixels(x)
    assert torch.allclose(m, dall_e.map_pixels(x)) and m.min() >= 0.1 and m.max() <= 0.9
    assert torch.allclose(unmap_pixels(m), x, atol=1e-6)
    y = torch.tensor([[[[-0.5, 0.0, 0.1, 0.5, 0.9, 1.0, 1.5]]]])
    assert torch.allclose(unmap_pixels(y), dall_e.unmap_pixels(y))
    assert unmap_pixels(y).min() == 0 and unmap_pixels(y).max() == 1  # clamped
    with pytest.raises(TypeError, match=r"x.float\(\) / 255"):
        map_pixels(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_random_init_model_shapes_token_range_and_errors():
    torch.manual_seed(3)
    model = OpenAIDVAE(**SMALL)
    assert model.num_codes == 512 and model.downsample_factor == 8 and model.grid_size((32, 16)) == (4, 2)
    tokens = model.encode(torch.rand(2, 3, 32, 16))
    assert tokens.shape == (2, 4, 2) and tokens.dtype == torch.int64
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 512
    images = model.decode(tokens)
    assert images.shape == (2, 3, 32, 16) and images.min() >= 0 and images.max() <= 1
    assert model(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)

    with pytest.raises(ValueError, match=r"multiples of 8.*received shape \(1, 3, 30, 32\)"):
        model.encode(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        model.encode(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, 512\).*from 0 to 512"):
        model.decode(torch.tensor([[[0, 512]]]))
    with pytest.raises(ValueError, match=r"from -1 to"):
        model.decode(torch.tensor([[[-1, 3]]]))
    with pytest.raises(TypeError, match="integer tokens"):
        model.decode(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        model.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="from_indices"):
        model.decoder(torch.zeros(1, 4, 4, dtype=torch.long))


# ------------------------------------------------------------------------------------------------
# pretrained(): download, offline error, pins, one-time conversion to safetensors
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("T2I_OFFLINE", "1")
    return tmp_path / "cache" / "weights" / "openai_dvae"


def _place(pickles, cache):
    cache.mkdir(parents=True, exist_ok=True)
    for src in pickles[True]:
        (cache / src.name).write_bytes(src.read_bytes())
    return {part: sha256_file(cache / f"{part}.pkl") for part in ("encoder", "decoder")}


def _pin(monkeypatch, hashes):
    for part, h in hashes.items():
        monkeypatch.setitem(OPENAI_DVAE_FILES, part, dataclasses.replace(OPENAI_DVAE_FILES[part], sha256=h))


def test_offline_error_names_url_destination_and_what_to_do(cache):
    with pytest.raises(DownloadError) as err:
        OpenAIDVAE.pretrained("quick")
    msg = str(err.value)
    assert "https://cdn.openai.com/dall-e/encoder.pkl" in msg
    assert str(cache / "encoder.pkl") in msg
    assert "place the file there by hand" in msg and "parameters" in msg


def test_pretrained_converts_once_then_reads_only_safetensors(ref, pickles, cache, monkeypatch):
    _pin(monkeypatch, _place(pickles, cache))
    calls = []
    real = od.convert_pickle
    monkeypatch.setattr(od, "convert_pickle", lambda *a, **k: calls.append(a[0]) or real(*a, **k))

    model = OpenAIDVAE.pretrained("quick", cfg=CFG)
    assert len(calls) == 2
    assert (cache / "encoder.safetensors").is_file() and (cache / "decoder.safetensors").is_file()
    assert not model.training and not any(p.requires_grad for p in model.parameters())

    ref_enc, ref_dec = ref
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = torch.argmax(ref_enc(dall_e.map_pixels(images)), dim=1)
    assert torch.equal(model.encode(images), want)

    # Second call: the pickles are gone and unpickling is never attempted; the safetensors suffice.
    for part in ("encoder", "decoder"):
        (cache / f"{part}.pkl").unlink()
    again = OpenAIDVAE.pretrained("quick", cfg=CFG)
    assert len(calls) == 2
    assert torch.equal(again.encode(images), want)
    assert torch.allclose(again.decode(want), model.decode(want))


def test_unpinned_files_are_not_unpickled_until_a_hash_is_given(pickles, cache, monkeypatch):
    hashes = _place(pickles, cache)
    _pin(monkeypatch, {"encoder": None, "decoder": None})  # the state of the library today
    monkeypatch.setattr(od, "convert_pickle", lambda *a, **k: pytest.fail("unpickled an unverified file"))
    with pytest.raises(CheckpointError) as err:
        OpenAIDVAE.pretrained("quick", cfg=CFG)
    msg = str(err.value)
    assert "pins no SHA-256" in msg and "sha256={" in msg
    assert hashes["encoder"] in msg and hashes["decoder"] in msg  # both files in one message
    monkeypatch.undo()  # restores the real convert_pickle (and the module's pins, None: still unpinned)
    monkeypatch.setenv("T2I_CACHE", str(cache.parent.parent))
    monkeypatch.setenv("T2I_OFFLINE", "1")
    # A wrong hash for a file on disk: offline, fetch refuses it (online it would download it again).
    with pytest.raises(DownloadError, match=f"SHA-256 is {hashes['encoder']}, not the expected"):
        OpenAIDVAE.pretrained("quick", cfg=CFG, sha256={"encoder": hashes["decoder"], "decoder": hashes["decoder"]})
    model = OpenAIDVAE.pretrained("quick", cfg=CFG, sha256=hashes)
    assert (cache / "encoder.safetensors").is_file()
    assert model.encode(torch.rand(1, 3, 16, 16)).shape == (1, 2, 2)


def test_vocabulary_convolutions_stay_fp32_under_autocast():
    """Like the release, the two convs that touch the 8192-way vocabulary ignore autocast."""
    torch.manual_seed(4)
    model = OpenAIDVAE(**SMALL)
    x = map_pixels(torch.rand(1, 3, 16, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model.encoder.blocks[:-1](x)  # everything before the logits runs in bf16
        logits = model.encoder(x)
        tokens = model.encode(torch.rand(1, 3, 16, 16))
        images = model.decode(tokens)
    assert hidden.dtype == torch.bfloat16 and logits.dtype == torch.float32
    assert images.dtype == torch.float32 and images.shape == (1, 3, 16, 16)

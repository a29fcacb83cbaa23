"""The one set of input checks (t2i_lib.models.checks, defined in t2i_lib.data.checks): each message says
what was expected, what was received, and what to do."""

import numpy as np
import pytest
import torch

import t2i_lib.data.checks as data_checks
from t2i_lib.models.checks import (InputDtypeError, check_code, check_conv_geometry, check_images,
                                   check_token_values, check_tokens)


def test_the_checks_are_defined_once():
    assert check_images is data_checks.check_images and check_tokens is data_checks.check_tokens
    assert issubclass(InputDtypeError, TypeError) and issubclass(InputDtypeError, ValueError)


# ------------------------------------------------------------------------------------------ images

def test_check_images_accepts_good_batches():
    check_images(torch.rand(2, 3, 8, 8), 3, 8, "f")
    check_images(torch.rand(2, 3, 8, 16), 3, (8, 16), "f")
    check_images(torch.rand(2, 1, 24, 16), None, None, "f", multiple_of=8)
    check_images(torch.rand(1, 5, 7, 7), None, None, "f")


def test_check_images_shape_messages_say_expected_and_received():
    with pytest.raises(ValueError, match=r"^VQVAE\.encode expects images of shape \(B, 3, 32, 32\) with values in "
                                         r"\[0, 1\]; received shape \(2, 1, 32, 32\)$"):
        check_images(torch.rand(2, 1, 32, 32), 3, 32, "VQVAE.encode")
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\).*received shape \(3, 32, 32\).*x\.unsqueeze\(0\)"):
        check_images(torch.rand(3, 32, 32), 3, 32, "f")
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 16\).*received shape \(1, 3, 16, 8\)"):
        check_images(torch.rand(1, 3, 16, 8), 3, (8, 16), "f")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*H and W multiples of 8; received shape \(1, 3, 30, 32\)"):
        check_images(torch.rand(1, 3, 30, 32), 3, None, "f", multiple_of=8)
    with pytest.raises(ValueError, match=r"\(B, C, S, S\).*received shape \(4,\)"):
        check_images(torch.rand(4), None, None, "f")


def test_check_images_dtype_messages_say_what_to_pass():
    with pytest.raises(InputDtypeError, match=r"f expects a floating-point tensor.*received dtype torch\.uint8 "
                                              r"\(8-bit images: x\.float\(\) / 255\)"):
        check_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 3, 8, "f")
    with pytest.raises(TypeError, match=r"torch\.int64 \(x\.float\(\)\)"):
        check_images(torch.zeros(1, 3, 8, 8, dtype=torch.long), 3, 8, "f")
    with pytest.raises(TypeError, match=r"torch\.Tensor.*received ndarray.*torch\.from_numpy"):
        check_images(np.zeros((1, 3, 8, 8), np.float32), 3, 8, "f")


# ------------------------------------------------------------------------------------------ tokens

def test_check_tokens_accepts_good_grids_as_tensors_and_arrays():
    check_tokens(torch.randint(0, 16, (2, 4, 4)), 16, (4, 4), "f")
    check_tokens(torch.randint(0, 16, (2, 4, 2)), 16, None, "f")
    check_tokens(np.random.randint(0, 16, (2, 4, 4)).astype(np.uint16), 16, 4, "f")
    check_tokens(torch.zeros(0, 4, 4, dtype=torch.long), 16, (4, 4), "f")  # no tokens: nothing out of range


def test_check_tokens_shape_messages_say_expected_and_received():
    with pytest.raises(ValueError, match=r"^DVAE\.decode expects token indices of shape \(B, 8, 8\); received "
                                         r"shape \(2, 4, 4\)$"):
        check_tokens(torch.zeros(2, 4, 4, dtype=torch.long), 64, (8, 8), "DVAE.decode")
    with pytest.raises(ValueError, match=r"\(B, h, w\); received shape \(4, 4\).*t\.unsqueeze\(0\)"):
        check_tokens(torch.zeros(4, 4, dtype=torch.long), 64, None, "f")
    with pytest.raises(ValueError, match=r"\(B, 4, 2\); received shape \(1, 2, 4\)"):
        check_tokens(torch.zeros(1, 2, 4, dtype=torch.long), 64, (4, 2), "f")


def test_out_of_range_tokens_give_the_valid_range_and_the_offending_min_and_max():
    msg = (r"^f: token indices must be in \[0, 15\] \(num_codes=16, i\.e\. the half-open range \[0, 16\)\); "
           r"received values from -1 to 20, outside \[0, 15\]")
    with pytest.raises(ValueError, match=msg):
        check_tokens(torch.tensor([[[-1, 20]]]), 16, None, "f")
    with pytest.raises(ValueError, match=r"from 0 to 16, outside \[0, 15\]"):
        check_tokens(np.array([[[0, 16]]]), 16, None, "f")
    with pytest.raises(ValueError, match=r"from 3 to 16"):
        check_token_values(torch.tensor([3, 16]), 16, "f")  # any shape


def test_wrong_token_dtypes_say_what_to_pass():
    for bad in (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool), np.zeros((1, 2, 2))):
        with pytest.raises(InputDtypeError, match=r"f expects integer tokens \(a LongTensor of code indices\); "
                                                  r"received dtype .*tokens\.long\(\)"):
            check_tokens(bad, 16, None, "f")
    with pytest.raises(TypeError, match=r"torch\.LongTensor \(B, h, w\); received list"):
        check_tokens([[[0]]], 16, None, "f")


def test_check_code():
    assert check_code(3, 16, "f") == 3 and check_code(torch.tensor(15), 16, "f") == 15
    assert check_code(np.int64(2), 16, "f") == 2
    with pytest.raises(ValueError, match=r"code 16 is out of range: the codebook has 16 codes, indices 0 to 15"):
        check_code(16, 16, "f")
    with pytest.raises(TypeError, match=r"integer in \[0, 15\]; received 1\.5"):
        check_code(1.5, 16, "f")
    with pytest.raises(TypeError, match="integer"):
        check_code(True, 16, "f")


def test_conv_geometry_still_checks():
    assert check_conv_geometry(32, [32, 64], 8) == (32, 64)
    with pytest.raises(ValueError, match="divisible"):
        check_conv_geometry(30, (32, 64), 8)

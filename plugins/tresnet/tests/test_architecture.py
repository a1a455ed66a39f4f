"""The re-implemented TResNet against timm, without timm: key names, order and shapes against
timm 1.0.31's manifests, parameter counts, and the logit statistics the reference doc
recorded for timm's tresnet_m on seeded weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrdeploy.testing.seeded import seeded_state_dict
from hrdeploy_tresnet.model import CONFIGS, BlurPool, SpaceToDepth, build_tresnet
from hrdeploy_tresnet.weights import convert


@pytest.mark.parametrize("variant", ["m", "l", "xl"])
def test_state_dict_matches_timm_manifest(variant, manifest, built):
    ref = manifest(f"{variant}.timm")
    state = built(variant).state_dict()
    assert list(state) == list(ref["keys"])  # names and order
    assert {k: list(v.shape) for k, v in state.items()} == ref["keys"]
    assert sum(p.numel() for p in built(variant).parameters()) == ref["params"]


def test_ascend_flavour_has_the_same_parameters(expected_state):
    assert {k: v.shape for k, v in expected_state("m_ascend").items()} == {k: v.shape for k, v in expected_state("m").items()}
    assert CONFIGS["m_ascend"].block_slope == CONFIGS["m_ascend"].stem_slope == 1e-2
    assert CONFIGS["m_ascend"].blur_padding == "zeros"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["l", "xl"])
def test_seeded_weights_load_strictly(variant, manifest, built):
    module = built(variant)
    seeded = seeded_state_dict(manifest(f"{variant}.timm"), seed=0)
    state, text = convert(seeded, variant, module.state_dict())
    module.load_state_dict(state, strict=True)
    assert text == f"timm tresnet_{variant} checkpoint"
    assert torch.equal(module.head.fc.weight, seeded["head.fc.weight"])


def test_reproduces_timm_statistics_on_seeded_weights(logits_m):
    """Statistics recorded from timm's tresnet_m with the seed-0 weights on the N(0,1) input
    of torch.Generator(1234) (``reference_input``): logits std 1.17, |max| 3.57, std of the sample difference 0.010,
    argmax 332 for both samples. A zero-padded blur gives std 1.15 and LeakyReLU 0.01 in the
    blocks |max| 3.55, so these figures do tell the flavours apart."""
    y = logits_m
    assert np.isfinite(y).all()
    assert round(float(y.std()), 2) == 1.17
    assert round(float(np.abs(y).max()), 2) == 3.57
    assert round(float((y[0] - y[1]).std()), 3) == 0.010
    assert y.argmax(1).tolist() == [332, 332]


def test_space_to_depth_order():
    """Channel index = (row in block * 4 + column in block) * C + channel, as ONNX
    SpaceToDepth and timm order it."""
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    y = SpaceToDepth(4)(x)
    assert y.shape == (2, 48, 2, 2)
    for i in range(4):
        for j in range(4):
            for c in range(3):
                assert torch.equal(y[:, (i * 4 + j) * 3 + c], x[:, c, i::4, j::4])


@pytest.mark.parametrize("padding", ["reflect", "zeros"])
def test_blur_pool_is_binomial_and_stride_2(padding):
    x = torch.randn(1, 4, 9, 10, generator=torch.Generator().manual_seed(0))
    pool = BlurPool(4, padding)
    assert "filt" not in pool.state_dict()  # never part of a checkpoint
    k = torch.tensor([1.0, 2.0, 1.0])
    filt = (k[:, None] * k[None, :] / 16).expand(4, 1, 3, 3)
    mode = "reflect" if padding == "reflect" else "constant"
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), filt, stride=2, groups=4)
    got = pool(x)
    assert got.shape == (1, 4, 5, 5)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # the padding only shows at the border
    other = BlurPool(4, "zeros" if padding == "reflect" else "reflect")(x)
    torch.testing.assert_close(got[..., 1:-1, 1:-1], other[..., 1:-1, 1:-1], rtol=0, atol=1e-6)
    assert not torch.allclose(got, other)


def test_other_input_sizes_keep_working(model_m):
    """The head is a mean over H, W, so a 96x96 input gives valid logits too."""
    with torch.no_grad():
        y = model_m(torch.rand(1, 3, 96, 96))
    assert y.shape == (1, 1000) and torch.isfinite(y).all()


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown TResNet variant"):
        build_tresnet("s")

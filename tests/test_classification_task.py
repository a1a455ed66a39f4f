"""ImageNet preprocessing against the PIL/torchvision reference, top-k and the readers."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hrdeploy.synthetic import make_image
from hrdeploy.tasks.classification import (ClassificationPipeline, TopKMetric, classification_variant,
                                           imagenet_classes, preprocess_image, resize_short_crop)
from hrdeploy.model import SampleRef


def torchvision_reference(bgr: np.ndarray, short: int = 256, crop: int = 224) -> np.ndarray:
    """What the seeds do: PIL Resize(256) on the short side (bilinear, antialiased), CenterCrop 224."""
    img = Image.fromarray(bgr[:, :, ::-1])
    w, h = img.size
    if w <= h:
        size = (short, int(short * h / w))
    else:
        size = (int(short * w / h), short)
    img = img.resize(size, Image.BILINEAR)
    left = int(round((size[0] - crop) / 2.0))
    top = int(round((size[1] - crop) / 2.0))
    return np.asarray(img.crop((left, top, left + crop, top + crop)))


@pytest.mark.parametrize("hw", [(375, 500), (500, 333), (1024, 768), (200, 180), (256, 341), (224, 224)])
def test_pil_bilinear_reproduces_torchvision_exactly(hw):
    """Decoded BGR in, the seeds' RGB bytes out: the resize runs on BGR (no colour copy of the
    full image) and gives the same bytes as torchvision's RGB pipeline, for downscaling and
    upscaling alike, with its short-side and centre-crop rounding."""
    bgr = make_image(*hw, seed=sum(hw))
    ref = torchvision_reference(bgr)
    ours = resize_short_crop(bgr, 256, 224, "pil-bilinear")
    assert np.array_equal(ref, ours[:, :, ::-1])


def test_cv2_linear_is_the_fast_approximation():
    bgr = make_image(375, 500, seed=3)
    ref = torchvision_reference(bgr).astype(np.float32)
    fast = resize_short_crop(bgr[:, :, ::-1], 256, 224, "cv2-linear").astype(np.float32)
    exact = resize_short_crop(bgr[:, :, ::-1], 256, 224, "pil-bilinear").astype(np.float32)
    assert np.abs(ref - exact).mean() < np.abs(ref - fast).mean()   # the exact path is the closer one
    assert np.abs(ref - fast).mean() < 3.0                            # but the fast one is still close


def test_normalised_tensor_equals_the_torchvision_formula():
    bgr = make_image(300, 400, seed=5)
    v = classification_variant("x")
    x = preprocess_image(bgr, v.preprocess)
    ref = torchvision_reference(bgr).astype(np.float32) / 255.0
    ref = ((ref - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32))
    ref = ref.transpose(2, 0, 1)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert np.abs(x - ref).max() < 1e-5   # float rounding of the folded multiply-add only


def test_top_k_is_sorted_softmax_with_names():
    pipe = ClassificationPipeline(classification_variant("x").preprocess, "logits", top_k=5)
    logits = np.zeros(1000, np.float32)
    logits[[3, 7, 1]] = [5.0, 9.0, 1.0]
    (pred,) = pipe.finish_batch([SampleRef("a", None)], [[]], [[{"logits": logits}]])
    top = pred["top_k"]
    assert [t["index"] for t in top[:3]] == [7, 3, 1]
    assert top[0]["name"] == imagenet_classes()[7][1]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert top[0]["score"] == pytest.approx(float(probs[7]), rel=1e-6)


def test_topk_metric_is_cumulative():
    m = TopKMetric()
    for label, ranked in ((1, [1, 2, 3, 4, 5]), (2, [1, 2, 3, 4, 5]), (9, [1, 2, 3, 4, 5]), (5, [1, 2, 3, 4, 5])):
        m.update(SampleRef("x", None, {"label": label}), {"top_k": [{"index": i} for i in ranked]})
    s = m.summary()
    assert (s["top1"], s["top2"], s["top5"]) == (25.0, 50.0, 75.0)


def test_classes_are_the_1000_synsets_in_standard_order():
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[0] == ("n01440764", "tench, Tinca tinca")
    assert [w for w, _ in classes] == sorted(w for w, _ in classes)

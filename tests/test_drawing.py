"""What `predict --vis` draws: labels on an opaque banner with the text inside it, a box and a
score for every person, top-down and bottom-up alike."""
from __future__ import annotations

import numpy as np

from hrdeploy.tasks.annotate import BANNER, draw_label
from hrdeploy.tasks.pose.draw import BOX_COLOR, draw_people, person_box


def _banner_and_text(image: np.ndarray) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Bounding boxes (y0, y1, x0, x1) of the banner pixels and of the bright text pixels."""
    banner = np.all(image == BANNER, axis=-1)
    bright = image.min(axis=-1) > 128
    ys, xs = np.nonzero(banner)
    ty, tx = np.nonzero(bright)
    return (ys.min(), ys.max(), xs.min(), xs.max()), (ty.min(), ty.max(), tx.min(), tx.max())


def test_label_text_sits_inside_its_banner_with_even_margins():
    image = np.full((200, 400, 3), 90, np.uint8)
    bottom = draw_label(image, "87.3% black-footed ferret", 10, 20, 0.6)
    (by0, by1, bx0, bx1), (ty0, ty1, tx0, tx1) = _banner_and_text(image)
    assert (by0, bx0) == (20, 10) and by1 == bottom
    assert by0 < ty0 and ty1 < by1 and bx0 < tx0 and tx1 < bx1        # no stroke outside the banner
    assert abs((tx0 - bx0) - (bx1 - tx1)) <= 3                          # centred left/right
    strokes = image[ty0:ty1 + 1, tx0:tx1 + 1].reshape(-1, 3).astype(int)
    brightest = strokes[strokes.sum(1).argmax()]
    # white strokes (anti-aliasing may keep the thinnest strokes just below 255)
    assert brightest.min() >= 200 and brightest.max() - brightest.min() <= 10, brightest


def test_label_is_clipped_into_the_image_and_above_a_box():
    image = np.zeros((60, 80, 3), np.uint8)
    draw_label(image, "0.97", 70, 50, 0.5)  # would run off the bottom-right corner
    (by0, by1, bx0, bx1), _ = _banner_and_text(image)
    assert by1 < 60 and bx1 < 80
    image = np.zeros((100, 100, 3), np.uint8)
    draw_label(image, "0.5", 30, 60, 0.5, above=True)
    (by0, by1, _, _), _ = _banner_and_text(image)
    assert by1 <= 60  # the caption ends where the box begins: the box's top edge stays visible


def _person(dx: float = 0, dy: float = 0) -> list[list[float]]:
    return [[100 + dx + 5 * (j % 4), 40 + dy + 12 * j, 0.9] for j in range(17)]


def test_bottom_up_people_get_a_box_from_their_joints_and_a_score():
    kpts = np.asarray(_person(), float)
    box = person_box({"keypoints": kpts.tolist()}, kpts)
    assert box is not None
    x, y, w, h = box
    assert x < kpts[:, 0].min() and y < kpts[:, 1].min()
    assert x + w > kpts[:, 0].max() and y + h > kpts[:, 1].max()
    image = np.zeros((300, 300, 3), np.uint8)
    drawn = draw_people(image, [{"keypoints": _person(), "score": 0.91}])
    assert (drawn[int(round(y)), int(round(x + w / 2))] == BOX_COLOR).all()  # top edge, not under the caption
    assert np.all(drawn == BANNER, axis=-1).any()  # the score's banner


def test_a_top_down_box_wins_and_a_person_without_joints_gets_none():
    assert person_box({"box": [1, 2, 3, 4]}, np.zeros((0, 3))) == (1.0, 2.0, 3.0, 4.0)
    assert person_box({}, np.zeros((1, 3))) is None

"""Masks: a blurred box keeps no detail and the same look as deface's blur; nothing outside a
mask changes, on a plane and on an RGB picture, through views of a larger picture."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streampii.masks import obscure


def _detail(picture: np.ndarray) -> float:
    return float(cv2.Laplacian(picture, cv2.CV_64F).var())


def _photo(shape: tuple[int, ...]) -> np.ndarray:
    """Structure at every scale (blocks, stripes, noise), like a face in a frame."""
    rng = np.random.default_rng(3)
    coarse = cv2.resize(rng.uniform(0, 255, (9, 16)), (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    stripes = 40 * np.sin(np.arange(shape[1]) / 3.0)[None, :]
    grey = np.clip(coarse + stripes + rng.normal(0, 20, shape[:2]), 0, 255).astype(np.uint8)
    return np.dstack([grey] * shape[2]) if len(shape) == 3 else grey


@pytest.mark.parametrize("size", [(40, 30), (224, 208), (400, 90)])
def test_blur_removes_detail_and_looks_like_a_double_box_blur(size):
    w, h = size
    picture = _photo((300, 500))
    box = (20, 30, 20 + w, 30 + h)
    before = picture[30 : 30 + h, 20 : 20 + w].copy()
    obscure(picture, box, "blur")
    after = picture[30 : 30 + h, 20 : 20 + w]
    assert _detail(after) < 0.02 * _detail(before)
    k = (max(3, w // 3) | 1, max(3, h // 3) | 1)
    deface = cv2.blur(cv2.blur(before, k), k)  # deface's blur, worked out at full size
    assert np.abs(after.astype(int) - deface.astype(int)).mean() < 4


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("mode", ["blur", "pixelate", "fill"])
def test_ellipse_changes_only_inside_and_writes_through_the_view(channels, mode):
    shape = (240, 320) if channels is None else (240, 320, channels)
    picture = _photo(shape)
    before = picture.copy()
    box = (100, 50, 260, 230)  # cut by nothing: the ellipse is whole
    obscure(picture, box, mode, ellipse=True, fill=0, full_box=box)
    changed = np.any(picture != before, axis=-1) if channels else picture != before
    outside, inner = np.ones(shape[:2], np.uint8), np.zeros(shape[:2], np.uint8)
    cv2.ellipse(outside, ((179.5, 139.5), (164.0, 184.0), 0.0), 0, -1)  # the ellipse, 2 pixels wider
    cv2.ellipse(inner, ((179.5, 139.5), (156.0, 176.0), 0.0), 1, -1)  # and 2 pixels narrower
    assert not changed[outside == 1].any()  # the box's corners and everything outside it are untouched
    assert changed[inner == 1].mean() > 0.9

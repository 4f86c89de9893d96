"""Changed regions: which parts of a frame a detector looks at again, from the redactor's thumbnails."""

from __future__ import annotations

import numpy as np

from streampii.regions import changed_regions, inside, refresh

SIZE = (1280, 720)  # thumbnails of 160x90: blocks of 8x8 pixels


def thumbs(*changes: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A reference thumbnail and one with the given (x0, y0, x1, y1) blocks brightened by 40."""
    rng = np.random.default_rng(3)
    reference = rng.integers(40, 200, (90, 160), dtype=np.uint8)
    thumb = reference.copy()
    for x0, y0, x1, y1 in changes:
        thumb[y0:y1, x0:x1] += 40
    return reference, thumb


def test_nothing_changed_means_nothing_to_look_at():
    reference, thumb = thumbs()
    noisy = np.clip(thumb.astype(int) + 12, 0, 255).astype(np.uint8)  # within the threshold
    assert changed_regions(reference, noisy, 12, SIZE, np.zeros((0, 4))) == []


def test_a_change_is_looked_at_with_context_around_it_in_sides_of_multiples_of_32():
    reference, thumb = thumbs((40, 20, 50, 30))  # pixels 320-400 x 160-240
    (rect,) = changed_regions(reference, thumb, 12, SIZE, np.zeros((0, 4)), pad=64)
    x0, y0, x1, y1 = rect
    assert x0 <= 320 - 64 and y0 <= 160 - 64 and x1 >= 400 + 64 and y1 >= 240 + 64
    assert (x1 - x0) % 32 == 0 and (y1 - y0) % 32 == 0
    assert (x1 - x0) * (y1 - y0) < 0.1 * SIZE[0] * SIZE[1]


def test_boxes_a_region_touches_are_taken_in_whole_and_others_stay_outside():
    reference, thumb = thumbs((40, 20, 50, 30))
    touched = [380, 200, 560, 330]  # a face beside the change, partly in its context
    far = [1000, 500, 1100, 620]
    rects = changed_regions(reference, thumb, 12, SIZE, np.array([touched, far], np.float32), pad=64)
    assert inside(np.array([touched, far]), rects).tolist() == [True, False]
    assert not any(x0 < far[2] and far[0] < x1 and y0 < far[3] and far[1] < y1 for x0, y0, x1, y1 in rects)


def test_distant_changes_are_looked_at_apart_and_near_ones_together():
    reference, thumb = thumbs((10, 10, 16, 16), (140, 70, 150, 80))
    assert len(changed_regions(reference, thumb, 12, SIZE, np.zeros((0, 4)))) == 2
    reference, thumb = thumbs((10, 10, 16, 16), (24, 10, 30, 16))  # 64 px apart: their contexts overlap
    rects = changed_regions(reference, thumb, 12, SIZE, np.zeros((0, 4)))
    assert len(rects) == 1


def test_a_large_change_means_the_whole_frame():
    reference, thumb = thumbs((0, 0, 120, 60))
    assert changed_regions(reference, thumb, 12, SIZE, np.zeros((0, 4)), max_fraction=0.5) is None
    reference, thumb = thumbs((40, 20, 50, 30))
    assert changed_regions(reference, thumb, 12, SIZE, np.zeros((0, 4)), max_fraction=0.0) is None
    assert changed_regions(reference, thumb[:, :100], 12, SIZE, np.zeros((0, 4))) is None  # another size


def test_a_region_near_the_edge_stays_in_the_frame():
    reference, thumb = thumbs((0, 0, 3, 3), (157, 87, 160, 90))
    for x0, y0, x1, y1 in changed_regions(reference, thumb, 12, SIZE, np.zeros((0, 4))):
        assert 0 <= x0 < x1 <= SIZE[0] and 0 <= y0 < y1 <= SIZE[1]


def test_refresh_takes_only_the_blocks_that_were_looked_at():
    reference, thumb = thumbs((40, 20, 50, 30), (140, 70, 150, 80))
    rects = changed_regions(reference, thumb, 12, SIZE, np.zeros((0, 4)))
    first = [r for r in rects if r[0] < 640]
    updated = refresh(reference, thumb, first, SIZE)
    assert np.array_equal(updated[20:30, 40:50], thumb[20:30, 40:50])  # looked at: now the new picture
    assert np.array_equal(updated[70:80, 140:150], reference[70:80, 140:150])  # not yet: still the old one
    # so the region not looked at is still a change for the next look
    assert len(changed_regions(updated, thumb, 12, SIZE, np.zeros((0, 4)))) == 1

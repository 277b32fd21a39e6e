"""Issue 15: one robust reading per track (block values from the evidence of all its frames) and a rect that
does not take in what lies beside the mosaic (CPU, seconds)."""

import numpy as np

from depixcli.locate.values import classify_values
from depixcli.restore.tracks import tracks_from_rects


def test_a_few_blocks_that_tell_the_sample_point_outweigh_many_where_every_sample_point_fits():
    # deface's 20 px mosaic at the top of a val clip's frame (pcavs, native): only its left side has the picture
    # beside it, on 8 frames 10 textured blocks; on 8 the outside line is flat where both sample points lie (only
    # the block mean is off), on 2 the top-left pixel matches and the centre one does not
    ties = np.tile([1.0, 10.6, 0.0, 0.0, np.nan, np.nan, np.nan], (8, 1))
    told = np.tile([1.0, 18.0, 22.0, 2.0, np.nan, np.nan, np.nan], (2, 1))
    assert classify_values(np.concatenate([ties, told])) == "samples"  # point samples, fused as top-left ones
    assert classify_values(np.concatenate([np.tile(ties, (2, 1)), np.tile(told, (4, 1))])) == "corner"
    # block means: the mean fits best on the blocks that tell them apart, however many blocks fit every one
    means = np.tile([1.0, 2.0, 20.0, 24.0, 5.0, 12.0, 5.0], (4, 1))
    flat = np.tile([1.0, 0.0, 0.0, 0.0, 5.0, 12.0, 5.0], (12, 1))
    assert classify_values(np.concatenate([means, flat])) == "mean"


def test_a_rect_one_cell_wider_than_the_rest_of_its_track_is_cut_back_on_the_stray_side():
    n, cell = 8, (6.3, 8.6)  # 16 centre samples of an 80 px face (a val clip)
    rects = [[70.0, 42.0, 171.0, 180.0] for _ in range(n)]
    for i in range(3):  # the first three frames took in a column of background on the left
        rects[i][0] = 64.0
    rects[7][3] = 189.0  # the last one a row below
    (tr,) = tracks_from_rects([[(tuple(r), cell)] for r in rects], (288, 360), 25.0)
    assert np.allclose(tr.rects, [[70.0, 42.0, 171.0, 180.0]] * n, atol=1.0)
    moving = [(100.0 + 6 * i, 40.0, 200.0 + 6 * i, 160.0) for i in range(n)]  # a face moving 6 px per frame
    (tr,) = tracks_from_rects([[(r, (10.0, 10.0))] for r in moving], (288, 360), 25.0)
    assert np.allclose(tr.rects, moving)
    rng = np.random.default_rng(0)  # deface: the box jitters by a few px, the grid on its corner
    jitter = [tuple(np.array([58.0, 22.0, 183.0, 184.0]) + rng.integers(-5, 6, 4)) for _ in range(n)]
    (tr,) = tracks_from_rects([[(r, (20.0, 20.0))] for r in jitter], (288, 360), 25.0)
    assert np.allclose(tr.rects, jitter)
    growing = [(100.0 - 4 * i, 40.0 - 4 * i, 200.0 + 4 * i, 160.0 + 4 * i) for i in range(n)]  # zoom, 16 blocks
    (tr,) = tracks_from_rects([[(r, ((r[2] - r[0]) / 16, (r[3] - r[1]) / 16))] for r in growing], (288, 360), 25.0)
    assert np.allclose(tr.rects, growing)


def test_a_part_of_the_mosaic_found_on_a_tracks_last_frame_is_pasted_on_the_whole_rect():
    n, cell = 8, (6.0, 9.0)  # 16 blocks over a val clip's face: the last frame found the middle third
    rects = [(150.0, 31.0, 246.0, 175.0)] * n
    rects[-1] = (150.0, 60.0, 246.0, 118.0)
    (tr,) = tracks_from_rects([[(r, cell)] for r in rects], (288, 360), 25.0)
    assert np.allclose(tr.rects, [rects[0]] * n, atol=1.0) and tr.filled[-1] and not tr.filled[:-1].any()
    rects[0] = (150.0, 100.0, 246.0, 175.0)  # ... or its first
    rects[-1] = rects[1]
    (tr,) = tracks_from_rects([[(r, cell)] for r in rects], (288, 360), 25.0)
    assert np.allclose(tr.rects, [rects[1]] * n, atol=1.0) and tr.filled[0]
    rects = [(150.0, 31.0, 246.0, 175.0)] * n
    rects[-1] = (150.0, 49.0, 246.0, 139.0)  # 2 rows of blocks missed above and 4 below: 0.62 of the area
    (tr,) = tracks_from_rects([[(r, cell)] for r in rects], (288, 360), 25.0)
    assert np.allclose(tr.rects, [rects[0]] * n, atol=1.0) and tr.filled[-1]
    leaving = [(0.0, 31.0, 96.0 - 20 * max(t - 4, 0), 175.0) for t in range(n)]  # cut by the frame border
    (tr,) = tracks_from_rects([[(r, cell)] for r in leaving], (288, 360), 25.0)
    assert np.allclose(tr.rects, leaving) and not tr.filled.any()

"""The second hardening round's rules on real COCO-WholeBody data (the shared 4-image sample).

The hostile-input tests build what they refuse; this checks that a real file and its real JPEGs pass
every new rule unchanged: the JSON-number rule and the batched reader, the cache's column checks and
checksums, and the image reader's header sizes.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from wholebody import cocowb
from wholebody.cocowb import columns_problem, read_wholebody
from wholebody.column_cache import cached_columns
from wholebody.images import header_size, read_image


def test_the_real_sample_passes_the_batched_reader_and_the_cache_checks(real_sample_json, tmp_path, monkeypatch,
                                                                        caplog):
    whole = read_wholebody(real_sample_json)
    arrays = whole.arrays()
    assert columns_problem(arrays, 133) is None
    with caplog.at_level(logging.WARNING):
        built = cached_columns(real_sample_json, tmp_path / "cache")
        mapped = cached_columns(real_sample_json, tmp_path / "cache")  # the second load maps and checks the file
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    for cols in (built, mapped):
        for name, arr in arrays.items():
            assert np.array_equal(cols.arrays()[name], arr), name
    monkeypatch.setattr(cocowb, "BATCHED_MIN_BYTES", 0)
    monkeypatch.setattr(cocowb, "BATCH_ANNOTATIONS", 3)
    monkeypatch.setattr(cocowb, "SCAN_BLOCK", 257)
    batched = read_wholebody(real_sample_json)
    for name, arr in arrays.items():
        assert np.array_equal(batched.arrays()[name], arr), name


def test_the_real_jpegs_header_sizes_are_their_decoded_sizes(real_sample, real_sample_json):
    cols = read_wholebody(real_sample_json)
    sizes = dict(zip((bytes(n).decode() for n in cols.file_names), zip(cols.widths.tolist(), cols.heights.tolist(), strict=True), strict=True))
    jpegs = sorted(real_sample.glob("*.jpg"))
    assert len(jpegs) == 4
    for p in jpegs:
        decoded = cv2.imread(str(p), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        assert header_size(p.read_bytes()) == (decoded.shape[1], decoded.shape[0]) == sizes[p.name], p.name
        assert read_image(p, expected_size=sizes[p.name]).shape == decoded.shape

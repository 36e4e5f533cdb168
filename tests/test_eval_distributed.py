"""Gathering results over processes: de-duplication by person key, and two gloo processes on CPU
giving the stats of one process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np

from wholebody.evaluation import dedupe_results, evaluate, gather_results, result_key
from wholebody.evaluation.distributed import pack_rows, unpack_rows
from wholebody.evaluation.simulate import simulate


def test_person_key():
    assert result_key({"image_id": 3, "ann_id": 7, "bbox_id": 1}) == (3, "ann_id", 7)
    assert result_key({"image_id": 3, "bbox_id": 1}) == (3, "bbox_id", 1)
    assert result_key({"image_id": 3}) is None
    # placeholders are not keys: two detector-box rows with ann_id -1 are two persons
    assert result_key({"image_id": 3, "ann_id": -1}) is None
    assert result_key({"image_id": 3, "ann_id": -1, "bbox_id": 4}) == (3, "bbox_id", 4)
    assert len(dedupe_results([{"image_id": 3, "ann_id": -1}, {"image_id": 3, "ann_id": -1}])) == 2


def test_dedupe_keeps_the_first_of_each_person_and_sorts():
    rows = [
        {"image_id": 2, "ann_id": 5, "score": 0.1},
        {"image_id": 1, "bbox_id": 9, "score": 0.2},
        {"image_id": 2, "ann_id": 5, "score": 0.9},
        {"image_id": 1, "score": 0.3},
    ]
    out = dedupe_results(rows)
    assert out == [rows[1], rows[0], rows[3]]


def test_rows_pack_into_columns_and_back_exactly():
    _, rows = simulate(30, 4)
    mixed = rows[:7] + [{k: v for k, v in r.items() if k != "score"} for r in rows[7:9]] + rows[9:]
    packed = pack_rows(mixed)
    assert len(packed) == len({frozenset(r) for r in mixed}) < len(mixed)  # one group per set of fields
    assert all(isinstance(v, np.ndarray) for g in packed for v in g["columns"].values())
    back = unpack_rows(packed)
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(map(key, back)) == sorted(map(key, mixed))  # same rows, same numbers (float64 kept)


def test_gather_without_a_process_group_only_dedupes():
    _, rows = simulate(30, 4)
    assert gather_results(rows + rows[:5]) == dedupe_results(rows)


def _shard(rows: list, rank: int, world: int) -> list:
    """What a padded distributed sampler hands to ``rank``: every world-th row, padded by repeats."""
    n = -(-len(rows) // world) * world
    padded = rows + rows[: n - len(rows)]
    return padded[rank::world]


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        d = json.loads(Path(data).read_text())
        rows = gather_results(_shard(d["rows"], rank, world))
        stats = evaluate(d["gt"], rows) if rank == 0 else None
        Path(out, f"rank{rank}.json").write_text(json.dumps({"stats": stats, "n": len(rows), "rows": rows}))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_give_the_single_process_stats(tmp_path):
    import torch.multiprocessing as mp
    gt, rows = simulate(120, 6)
    rows = rows[:-3]  # so that the sampler has to pad
    assert len(rows) % 2 == 1
    (tmp_path / "data.json").write_text(json.dumps({"gt": gt, "rows": rows}))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "data.json"), str(tmp_path)), nprocs=2, join=True)
    single = evaluate(gt, gather_results(rows))
    got = json.loads((tmp_path / "rank0.json").read_text())
    assert got["n"] == len(rows) and got["rows"] == json.loads(json.dumps(gather_results(rows)))  # every person once
    assert got["stats"] == json.loads(json.dumps(single))
    other = json.loads((tmp_path / "rank1.json").read_text())
    assert other["n"] == 0 and other["stats"] is None  # no rank but 0 holds the gathered rows
    # the padding duplicates would have changed the stats
    assert evaluate(gt, _shard(rows, 0, 2) + _shard(rows, 1, 2)) != single

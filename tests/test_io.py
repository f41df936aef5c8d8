"""Atomic writers and format round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.io import (atomic_dir, atomic_path, read_json, read_parquet, write_json, write_npy,
                         write_parquet)


def test_parquet_round_trip_keeps_types(tmp_path):
    df = pd.DataFrame({"id": ["a", "b"], "n": [1, 2], "x": [0.5, 1.5],
                       "tags": [["red", "circle"], []]})
    write_parquet(df, tmp_path / "t.parquet")
    back = read_parquet(tmp_path / "t.parquet")
    assert back["id"].tolist() == ["a", "b"] and back["n"].dtype == np.int64
    assert [list(t) for t in back["tags"]] == [["red", "circle"], []]


def test_json_and_npy_round_trip(tmp_path):
    write_json({"b": 1, "a": [1.5]}, tmp_path / "m.json")
    assert read_json(tmp_path / "m.json") == {"a": [1.5], "b": 1}
    arr = np.arange(12, dtype=np.float16).reshape(3, 4)
    write_npy(arr, tmp_path / "a.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), arr)


def test_atomic_path_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_replaces_whole_and_cleans_up(tmp_path):
    target = tmp_path / "d"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_read_parquet_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="did the stage that writes it run"):
        read_parquet(tmp_path / "missing.parquet")


def test_atomic_outputs_get_umask_permissions(tmp_path):
    import os
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_stale_temps_finds_killed_atomic_writes_and_nothing_else(tmp_path):
    """A kill -9 between mkstemp and the rename leaves ``.<name>.<random>.tmp`` (files and folders)
    and atomic_dir's ``.<name>.old``; those are found beside the output and inside it, nothing else."""
    from pipeline.io import atomic_dir, atomic_path, remove_stale_temps, stale_temps

    out = tmp_path / "raw" / "text_t08.parquet"
    write_json({"a": 1}, out)  # a finished output stays
    keep = [out, tmp_path / "raw" / "text_t07.parquet", tmp_path / "raw" / ".text_t08.parquet.notes"]
    keep[1].write_text("x")
    keep[2].write_text("not ours")
    with atomic_path(out) as tmp:  # the name a killed write leaves: mkstemp's, beside the output
        leftover = tmp.with_name(f".text_t08.parquet.{tmp.name.split('.')[-2]}_k.tmp")
        leftover.write_text("half")
    other_temp = tmp_path / "raw" / ".text_t07.parquet.abc123.tmp"  # another stage's temp: not ours
    other_temp.write_text("half")
    assert stale_temps(out) == [leftover]

    folder = tmp_path / "eval" / "macvr"
    with atomic_dir(folder) as tmp:
        (tmp / "ranks.npy").write_text("x")
    half_dir = tmp_path / "eval" / ".macvr.k2j4_x9.tmp"
    (half_dir / "sub").mkdir(parents=True)
    old = tmp_path / "eval" / ".macvr.old"
    old.mkdir()
    inner = folder / "plots" / ".recall.png.q8w7e6r5.tmp"
    inner.parent.mkdir()
    inner.write_text("half")
    inner_dir = folder / ".shard.zz.tmp"
    (inner_dir / ".nested.aa.tmp").mkdir(parents=True)  # inside a stale folder: removed with it
    assert stale_temps(folder) == sorted([half_dir, old]) + [inner_dir, inner]
    assert remove_stale_temps(folder) == sorted([half_dir, old]) + [inner_dir, inner]
    assert stale_temps(folder) == [] and (folder / "ranks.npy").exists()
    remove_stale_temps(out)
    assert all(p.exists() for p in keep) and other_temp.exists() and not leftover.exists()
    assert stale_temps(tmp_path / "missing" / "x.json") == []


def test_cut_files_fail_with_a_line_naming_them(tmp_path):
    """A file cut by a kill (or a foreign one) fails to read with its path in the message."""
    from pipeline.io import UnreadableFile, load_npy

    npy, parquet, js = tmp_path / "frames.npy", tmp_path / "index.parquet", tmp_path / "meta.json"
    write_npy(np.arange(4000, dtype=np.float32).reshape(100, 40), npy)
    write_parquet(pd.DataFrame({"a": range(1000)}), parquet)
    write_json({"a": list(range(100))}, js)
    assert load_npy(npy, mmap_mode="r").shape == (100, 40)
    for path in (npy, parquet, js):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    for read in (lambda: load_npy(npy, mmap_mode="r"), lambda: load_npy(npy), lambda: read_parquet(parquet),
                 lambda: read_json(js)):
        with pytest.raises(UnreadableFile, match=r"^" + str(tmp_path) + r"/\w+\.(npy|parquet|json): unreadable \(.+\); "
                                                 r"delete it and re-run the stage that writes it$"):
            read()
    with pytest.raises(FileNotFoundError, match="missing.npy: not found"):
        load_npy(tmp_path / "missing.npy")

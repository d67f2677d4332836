"""jaxprotect.datasets.input_pipeline: per-process contiguous shards, fixed order, resumable state."""
from __future__ import annotations

import itertools
import json

import pytest

from jaxprotect import datasets


def records(n: int) -> list[dict]:
    # bytes ending in NULs: numpy stacking would strip them, so batches must keep records as they are
    return [{"path": f"p{i:03d}.jpg", "image": bytes([i % 256]) + b"\xff\x00\x00"} for i in range(n)]


def indices_of(batches) -> list[list[int]]:
    return [b.indices.tolist() for b in batches]


def test_shard_bounds_cover_everything_once_and_in_order():
    for count in (0, 1, 5, 7, 64, 101):
        for processes in (1, 2, 3, 8):
            bounds = [datasets.shard_bounds(count, p, processes) for p in range(processes)]
            assert bounds[0][0] == 0 and bounds[-1][1] == count
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        datasets.shard_bounds(10, 2, 2)


def test_batches_keep_records_exactly_and_in_order():
    source = records(10)
    batches = list(datasets.input_pipeline(source, batch_size=4, process_index=0, process_count=1))
    assert indices_of(batches) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [r for b in batches for r in b.records] == source
    again = list(datasets.input_pipeline(source, batch_size=4, process_index=0, process_count=1))
    assert indices_of(again) == indices_of(batches)


def test_default_process_is_this_jax_process():
    batches = list(datasets.input_pipeline(records(5), batch_size=2))
    assert indices_of(batches) == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("chosen", [None, [14, 3, 9, 0, 21, 22, 8, 15, 2]])
def test_two_processes_see_every_selected_record_exactly_once(chosen):
    source = records(23)
    seen = []
    for p in range(2):
        batches = list(datasets.input_pipeline(source, batch_size=3, indices=chosen, process_index=p, process_count=2))
        flat = [i for b in batches for i in b.indices.tolist()]
        assert flat == sorted(flat)  # ascending within a process
        assert all(source[i] is r for b in batches for i, r in zip(b.indices.tolist(), b.records))
        seen.append(flat)
    expected = sorted(chosen) if chosen is not None else list(range(23))
    assert seen[0] + seen[1] == expected  # contiguous shares: process 0's all come first
    assert abs(len(seen[0]) - len(seen[1])) <= 1


def test_equal_batches_pad_every_process_to_the_same_steps():
    source = records(11)
    per_process = [list(datasets.input_pipeline(source, batch_size=4, process_index=p, process_count=3,
                                                equal_batches=True)) for p in range(3)]
    assert [len(b) for b in per_process] == [1, 1, 1]  # shares 3, 4, 4 -> one full batch each
    assert [b[0].indices.tolist() for b in per_process] == [[0, 1, 2, -1], [3, 4, 5, 6], [7, 8, 9, 10]]
    assert per_process[0][0].records[3] is None


def test_state_restores_the_rest_exactly():
    source = records(23)
    pipeline = datasets.input_pipeline(source, batch_size=4, indices=range(1, 23), process_index=1, process_count=2)
    full = indices_of(pipeline)
    it = iter(pipeline)
    head = indices_of([next(it), next(it)])
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
    fresh = iter(pipeline)
    fresh.set_state(state)
    assert head + indices_of(fresh) == full
    assert full == [[12, 13, 14, 15], [16, 17, 18, 19], [20, 21, 22]]


def test_state_of_another_pipeline_is_refused():
    it = iter(datasets.input_pipeline(records(12), batch_size=4, process_index=0, process_count=2))
    next(it)
    state = it.get_state()
    other = iter(datasets.input_pipeline(records(12), batch_size=4, process_index=0, process_count=3))
    with pytest.raises(ValueError, match="process_count: saved 2, now 3"):
        other.set_state(state)
    with pytest.raises(ValueError, match="not a jaxprotect input state"):
        other.set_state({"next_index": 1})


def test_orbax_checkpoint_round_trip(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    import grain

    pipeline = datasets.input_pipeline(records(9), batch_size=2, process_index=0, process_count=1)
    it = iter(pipeline)
    next(it), next(it)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(1, args=ocp.args.Composite(input=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
    assert (tmp_path / "ckpt" / "1" / "input" / "process_0-of-1.json").is_file()
    fresh = iter(pipeline)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.restore(1, args=ocp.args.Composite(input=grain.checkpoint.CheckpointRestore(fresh)))
    assert indices_of(fresh) == [[4, 5], [6, 7], [8]]


def test_bad_indices_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        datasets.input_pipeline(records(5), batch_size=2, indices=[0, 5], process_index=0, process_count=1)
    with pytest.raises(ValueError, match="repeated: \\[2\\]"):
        datasets.input_pipeline(records(5), batch_size=2, indices=[2, 0, 2], process_index=0, process_count=1)
    with pytest.raises(ValueError, match="integers"):
        datasets.input_pipeline(records(5), batch_size=2, indices=[0.5], process_index=0, process_count=1)


def test_pipeline_over_a_built_dataset(tmp_path):
    from test_datasets import photo_bytes, write

    folder = tmp_path / "photos"
    for i in range(5):
        write(folder / f"{i}.png", photo_bytes(i))
    datasets.build("photo_folder", manual_dir=folder, data_dir=tmp_path / "data")
    source = datasets.load("photo_folder", data_dir=tmp_path / "data")
    (batch,) = list(datasets.input_pipeline(source, batch_size=8, indices=[4, 1], process_index=0, process_count=1))
    assert batch.indices.tolist() == [1, 4]
    assert [r["path"] for r in batch.records] == ["1.png", "4.png"]
    assert batch.records[1]["image"] == (folder / "4.png").read_bytes()
    raw = datasets.builder("photo_folder", data_dir=tmp_path / "data").as_data_source("photos")
    (batch,) = list(datasets.input_pipeline(raw, batch_size=8, indices=[3], process_index=0, process_count=1))
    assert batch.records[0]["path"] == b"3.png"  # the raw tfds source gives Text as bytes

"""One run on two processes under torchrun (gloo on CPU) against the same run in one process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lepton_bench.cli import main
from lepton_bench.errors import ConfigError
from lepton_bench.results import read_records
from lepton_bench.run.distributed import World, check_batch_sizes, shard

from .conftest import TINY

SETS = [a for o in [*TINY, "train.steps=6", "train.eval_every=3", "train.log_every=1"] for a in ("--set", o)]


def torchrun(args, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), "-m", "lepton_bench", *args],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("variant", ["hard-ew", "hard-pcgrad"])   # pcgrad: the Jacobian averaged over ranks
def test_torchrun_two_processes_train_like_one(variant, data_dir, tmp_path):
    args = ["run", "--variant", variant, "--tasks", "imdb", "conll2003", "--data-dir", str(data_dir),
            "--device", "cpu", "--limit-eval", "24", "--no-progress", *SETS]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    proc = torchrun([*args, "--out", str(tmp_path / "two")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    [one] = read_records(tmp_path / "one" / "runs.jsonl")
    two = read_records(tmp_path / "two" / "runs.jsonl")
    assert len(two) == 1, "only rank 0 writes a record"
    two = two[0]
    assert two["env"]["world_size"] == 2 and one["env"]["world_size"] == 1
    assert two["run_id"] == one["run_id"]
    # same global batches, gradients averaged over the shards: the same training within tolerance
    # (the tagging loss is a mean over tokens, which differs slightly between a shard and the whole)
    for p1, p2 in zip(one["curves"]["train_loss"], two["curves"]["train_loss"], strict=True):
        for task in ("imdb", "conll2003"):
            assert p2[task] == pytest.approx(p1[task], rel=0.02)
    for task in ("imdb", "conll2003"):
        for name, value in one["metrics"][task]["test"].items():
            assert two["metrics"][task]["test"][name] == pytest.approx(value, abs=0.05)
        assert two["cost"]["tasks"][task]["examples_seen"] == one["cost"]["tasks"][task]["examples_seen"]


def test_a_weighting_with_per_process_state_is_refused_under_torchrun(data_dir, tmp_path):
    proc = torchrun(["run", "--variant", "hard-dwa", "--data-dir", str(data_dir), "--device", "cpu", "--no-progress",
                     "--out", str(tmp_path), *SETS])
    assert proc.returncode != 0
    assert "weighting dwa keeps state from each process's own losses" in proc.stderr
    assert not (tmp_path / "runs.jsonl").exists()


def test_shards_split_a_global_batch_and_batch_sizes_must_divide():
    import torch

    batch = {"x": torch.arange(8), "y": torch.arange(8) * 10}
    parts = [shard(batch, World(rank, 2)) for rank in range(2)]
    assert torch.equal(torch.cat([p["x"] for p in parts]), batch["x"])
    assert torch.equal(parts[1]["y"], torch.tensor([40, 50, 60, 70]))
    assert shard(batch, World()) is batch
    with pytest.raises(ConfigError, match="divide by 4; not imdb=30"):
        check_batch_sizes(World(0, 4), {"imdb": 30, "cifar10": 128})

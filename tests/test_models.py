"""Model shapes for every task and architecture, parameter accounting, padding."""

import pytest
import torch

from lepton_bench.config import ModelConfig
from lepton_bench.errors import ConfigError
from lepton_bench.models import ARCHITECTURES, TaskIO, build_model

CFG = ModelConfig(dim=32, depth=2, heads=2, image_widths=(8, 16))
IOS = {
    "cifar10": TaskIO("cifar10", "image", "class", 10),
    "imdb": TaskIO("imdb", "text", "class", 2, vocab_size=50, max_len=16),
    "conll2003": TaskIO("conll2003", "text", "tag", 9, vocab_size=40, max_len=16, num_shapes=6),
}


def batch_for(io: TaskIO, B=3, L=11):
    if io.input == "image":
        return {"x": torch.randint(0, 256, (B, 3, 32, 32), dtype=torch.uint8)}
    ids = torch.randint(2, io.vocab_size, (B, L))
    ids[0, 7:] = 0   # a padded example
    return {"ids": ids, "shape": torch.randint(1, 6, (B, L)) * (ids != 0)}


def task_sets(arch):
    return [[t] for t in IOS] if arch == "single" else [list(IOS)]


@pytest.mark.parametrize("arch", ARCHITECTURES.list())
def test_output_shapes_for_every_task(arch):
    for tasks in task_sets(arch):
        model = build_model(arch, [IOS[t] for t in tasks], CFG)
        for t in tasks:
            io = IOS[t]
            out = model(t, batch_for(io))
            expected = (3, 11, io.num_outputs) if io.output == "tag" else (3, io.num_outputs)
            assert out.shape == expected, (arch, t)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ARCHITECTURES.list())
def test_parameter_counts_add_up(arch):
    for tasks in task_sets(arch):
        model = build_model(arch, [IOS[t] for t in tasks], CFG)
        c = model.parameter_counts()
        assert c["total"] == c["shared"] + sum(c[f"task.{t}"] for t in tasks)
        if len(tasks) == 1:
            assert c["shared"] == 0


def test_hard_sharing_shares_exactly_the_trunk():
    model = build_model("hard", list(IOS.values()), CFG)
    trunk = sum(p.numel() for p in model.trunks["shared"].parameters())
    c = model.parameter_counts()
    assert c["shared"] == trunk
    assert c["task.cifar10"] == sum(p.numel() for m in (model.stems["cifar10"], model.heads["cifar10"])
                                    for p in m.parameters())


def test_single_refuses_several_tasks():
    with pytest.raises(ConfigError, match="exactly one task"):
        build_model("single", list(IOS.values()), CFG)


@pytest.mark.parametrize("task", ["imdb", "conll2003"])
def test_padding_changes_nothing(task):
    """An example padded inside a longer batch gets the same output as on its own."""
    io = IOS[task]
    model = build_model("single", [io], CFG).eval()
    batch = batch_for(io)
    n = 7  # example 0 has 7 real tokens
    alone = {k: v[:1, :n] for k, v in batch.items()}
    with torch.no_grad():
        full, own = model(task, batch)[:1], model(task, alone)
    if io.output == "tag":
        full = full[:, :n]
    torch.testing.assert_close(full, own, rtol=1e-4, atol=1e-5)

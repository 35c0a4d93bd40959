"""The task registry as a plugin author meets it: datasets named apart from tasks, declarations
checked, every task's STL variant, the default multi-task set."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

import lepton_bench.variants as V
from lepton_bench.errors import ConfigError
from lepton_bench.tasks import CHUNK_TAGS, TASKS, Dataset, TaskSpec, default_tasks, register_task

from .conftest import ROOT, SHARED_DATA, dataset_folders
from .pos_demo_plugin import POS_DEMO, POS_TAGS

CORE = ("cifar10", "imdb", "conll2003")


def test_a_dataset_folder_defaults_to_the_last_part_of_its_hub_id():
    assert Dataset("uoft-cs/cifar10", "plain_text").folder == "cifar10"
    assert Dataset("eriktks/conll2003", folder="conll").folder == "conll"
    assert [TASKS.get(t).dataset.folder for t in CORE] == list(CORE)   # the mirrors' folder names


def test_the_test_plugin_task_shares_the_conll2003_dataset():
    assert "conll2003_pos_demo" in TASKS and TASKS.module("conll2003_pos_demo") == "tests.pos_demo_plugin"
    assert POS_DEMO.dataset == TASKS.get("conll2003").dataset
    assert POS_DEMO.num_labels == 47 and POS_DEMO.primary == "token_accuracy"
    # its tag names are the dataset's, in its order (the parquet files' embedded HF features)
    schema = pq.read_schema(SHARED_DATA / "conll2003" / "data" / "train-00000-of-00001.parquet")
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert tuple(features["pos_tags"]["feature"]["names"]) == POS_TAGS


def test_the_core_conll2003_tasks_name_their_tags_in_the_datasets_order():
    """POS (47 tags) and chunking (23 IOB2 tags) read other columns of the one CoNLL-2003 dataset;
    their tag names are the parquet files' embedded HF features, in order, as NER's are."""
    schema = pq.read_schema(SHARED_DATA / "conll2003" / "data" / "train-00000-of-00001.parquet")
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    for task, column, n in (("conll2003", "ner_tags", 9), ("conll2003_pos", "pos_tags", 47),
                            ("conll2003_chunk", "chunk_tags", 23)):
        spec = TASKS.get(task)
        assert spec.columns == {"input": "tokens", "label": column} and spec.dataset is TASKS.get("conll2003").dataset
        assert spec.labels == tuple(features[column]["feature"]["names"]) and spec.num_labels == n, task
        assert spec.has_validation and spec.pretokenized and spec.default_mtl == (task == "conll2003")
    assert TASKS.get("conll2003_chunk").labels == CHUNK_TAGS and POS_TAGS == TASKS.get("conll2003_pos").labels
    assert TASKS.get("conll2003_pos").metrics == ("token_accuracy",)
    assert TASKS.get("conll2003_chunk").metrics == ("chunk_f1", "token_accuracy")
    core = [s.name for s in TASKS.in_order() if TASKS.module(s.name) == "lepton_bench.tasks"]
    assert core == [*CORE, "conll2003_pos", "conll2003_chunk", "cifar10_coarse", "conll2003_spans"]


def test_every_task_has_its_stl_variant():
    for name in TASKS:
        v = V.VARIANTS.get(f"stl-{name}")
        assert v.architecture == "single" and v.tasks == (name,)
        assert list(V.compose(f"stl-{name}").tasks) == [name]


def test_the_default_task_set_comes_from_the_registry():
    assert default_tasks() == CORE   # the core tasks flagged default_mtl, in registration order
    assert not hasattr(V, "ALL_TASKS")
    for name, v in V.VARIANTS.items():
        if v.architecture != "single" and not v.tasks:
            assert tuple(V.compose(name).tasks) == CORE, name
    assert {t for v in V.VARIANTS.list("hard-static-*") for t in V.compose(v).weighting_args["static"]} == set(CORE)


def test_a_task_registered_after_the_variants_gets_its_stl_variant_too():
    """Both orders, in a fresh process: a task registered before lepton_bench.variants is imported,
    and one registered after (what a plugin loaded by the CLI does)."""
    code = textwrap.dedent("""
        import sys
        from lepton_bench.tasks import TASKS, Dataset, TaskSpec, register_task

        def spec(name):
            return TaskSpec(name=name, help="a test task", dataset=Dataset("stanfordnlp/imdb", "plain_text"),
                            input="text", output="class", columns={"input": "text", "label": "label"},
                            labels=("neg", "pos"), metrics=("f1_pos", "accuracy"))

        early = register_task(spec("early_test"))
        import lepton_bench.variants as V
        register_task(spec("late_test"))
        register_task(early)   # the same spec again: nothing new
        for name in ("early_test", "late_test"):
            assert V.VARIANTS.get("stl-" + name).tasks == (name,)
        assert "torch" not in sys.modules   # tasks and their variants register without torch
        assert len(V.VARIANTS.list("stl-*")) == len(TASKS) == 9   # the core's 7 tasks and these 2
        # hard-<weighting> are derived from the weighting registry (torch): a listing or a lookup loads it
        assert list(V.compose("hard-ew").tasks) == ["cifar10", "imdb", "conll2003"]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_spec_registers_under_its_own_name_only():
    with pytest.raises(ConfigError, match="register a TaskSpec under its own name"):
        TASKS.register("other_name_test", POS_DEMO)
    assert register_task(POS_DEMO) is POS_DEMO   # again: accepted, one STL variant
    assert "other_name_test" not in TASKS and "stl-other_name_test" not in V.VARIANTS


def test_bad_declarations_fail_with_the_task_named():
    base = TASKS.get("imdb")
    with pytest.raises(ConfigError, match="task bad_test: output must be one of class, tag"):
        dataclasses.replace(base, name="bad_test", output="span")
    with pytest.raises(ConfigError, match="task bad_test: columns name no label column"):
        dataclasses.replace(base, name="bad_test", columns={"input": "text"})
    with pytest.raises(ConfigError, match="task bad_test: labels must be distinct"):
        dataclasses.replace(base, name="bad_test", labels=("neg", "neg"))
    with pytest.raises(ConfigError, match="task bad_test: dataset must be a lepton_bench.tasks.Dataset"):
        TaskSpec(name="bad_test", help="", dataset="stanfordnlp/imdb", input="text", output="class",
                 columns=base.columns, labels=base.labels, metrics=base.metrics)


def test_the_data_dir_fixture_writes_one_folder_per_dataset(data_dir):
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(dataset_folders())
    assert "conll2003_pos_demo" not in dataset_folders() and "conll2003" in dataset_folders()

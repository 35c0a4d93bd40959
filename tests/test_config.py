import pytest

from lepton_bench.config import RunConfig, TaskConfig, apply_overrides, from_dict
from lepton_bench.errors import ConfigError
from lepton_bench.variants import make_config


def test_overrides_coerce_types():
    cfg = make_config("hard-ew", overrides=["train.lr=1e-3", "tasks.imdb.max_len=64",
                                            "model.image_widths=[8,16]", "model.case_feature=false"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.tasks["imdb"].max_len == 64
    assert cfg.model.image_widths == (8, 16)
    assert cfg.model.case_feature is False
    assert make_config("hard-ew").tasks["imdb"].max_len == 256  # defaults untouched


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "did you mean lr"),
    ("tasks.mnist.max_len=3", "unknown config key 'tasks.mnist'"),
    ("train.steps=abc", "bad value 'abc' for train.steps"),
    ("train.steps=1.5", "bad value 1.5"),
    ("train", "expected KEY=VALUE"),
    ("model.case_feature=3", "bad value 3"),
])
def test_bad_overrides_are_clear(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config("hard-ew", overrides=[override])


def test_hash_ignores_where_it_runs_but_not_what_is_trained():
    a = make_config("hard-ew", device="cpu", data_dir="/x")
    b = make_config("hard-ew", device="cuda", data_dir="/y")
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != make_config("hard-ew", seed=1).config_hash()
    assert a.config_hash() != apply_overrides(a, ["train.lr=0.1"]).config_hash()


def test_round_trip_through_dict():
    cfg = make_config("stl-imdb", overrides=["model.image_widths=[4]"])
    again = from_dict(cfg.to_dict())
    assert again == cfg and again.config_hash() == cfg.config_hash()


def test_variant_and_task_errors():
    with pytest.raises(ConfigError, match="did you mean stl-imdb"):
        make_config("stl-imbd")
    with pytest.raises(ConfigError, match="unknown task 'imbd'; did you mean imdb"):
        make_config("hard-ew", tasks=["imbd"])
    with pytest.raises(ConfigError, match="single-task"):
        make_config("stl-imdb", tasks=["imdb", "cifar10"])
    assert list(make_config("hard-ew", tasks=["imdb", "conll2003"]).tasks) == ["imdb", "conll2003"]


def test_defaults_are_per_task():
    cfg = RunConfig(tasks={"a": TaskConfig(batch_size=3)})
    assert cfg.tasks["a"].batch_size == 3


def test_one_entry_of_a_mapping_is_set_by_its_dotted_key():
    cfg = make_config("hard-ew", overrides=["model.stems.imdb=bilstm", "weighting_args.static.imdb=2"])
    assert cfg.model.stems == {"imdb": "bilstm"} and cfg.weighting_args.static == {"imdb": 2.0}
    with pytest.raises(ConfigError, match="bad value 'x' for weighting_args.static.imdb"):
        make_config("hard-ew", overrides=["weighting_args.static.imdb=x"])
    with pytest.raises(ConfigError, match="unknown config key 'tasks.imbd'"):   # tasks are sections, not entries
        make_config("hard-ew", overrides=["tasks.imbd.max_len=3"])


def test_stem_and_trunk_names_are_checked_when_the_config_is_made():
    with pytest.raises(ConfigError, match="unknown trunk 'lstm'"):
        make_config("hard-ew", overrides=["model.trunk=lstm"])
    with pytest.raises(ConfigError, match="stem conv reads image, but task imdb gives text"):
        make_config("stl-imdb", overrides=["model.stems.imdb=conv"])
    # a task's default stem named explicitly is the same model, so the same run id
    assert make_config("stl-imdb", overrides=["model.stems.imdb=embedding"]).config_hash() == \
        make_config("stl-imdb").config_hash()

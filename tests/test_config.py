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
    cfg = make_config("hard-static", overrides=["model.stems.imdb=bilstm", "weighting_args.static.imdb=2"])
    assert cfg.model.stems == {"imdb": "bilstm"} and cfg.weighting_args["static"] == {"imdb": 2.0}
    with pytest.raises(ConfigError, match="bad value 'x' for weighting_args.static.imdb"):
        make_config("hard-static", overrides=["weighting_args.static.imdb=x"])
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


# --------------------------------------------------------------------------- one declaration per field


def _identity_paths(cfg_dict: dict) -> set[str]:
    from lepton_bench.config import flatten

    return set(flatten(from_dict(cfg_dict).identity()))


def test_committed_run_ids_are_reproduced_from_their_configs():
    """Every committed record's run id is what today's code computes from its config, so grids keep
    resuming. Records made before some hashed fields existed (weighting_args.*, soft sharing's
    settings: the first baselines at git 719c386) cannot be recomputed by any later code; they are
    counted, and must stay exactly those."""
    from lepton_bench.config import flatten
    from lepton_bench.results import read_records, run_id, runs_path

    from .conftest import ROOT

    for grid in ("quick", "baselines", "tagging", "scarcity"):
        records = read_records(runs_path(ROOT / "results" / grid))
        assert records
        legacy = []
        for r in records:
            cfg = from_dict(r["config"])
            if run_id(cfg) == r["run_id"]:
                assert cfg.config_hash() == r["config_hash"]
                continue
            # not reproduced: allowed only for a record that lacks a hashed field (weighting_args' defaults
            # are filled in by hashed_weighting_args, so a record of a method with its own settings is not one)
            assert _identity_paths(r["config"]) - set(flatten(r["config"])), r["run_id"]
            legacy.append(r)
        assert {r["env"]["git"][:7] for r in legacy} <= {"719c386"}
        assert len(legacy) == {"quick": 0, "baselines": 4, "tagging": 0, "scarcity": 0}[grid]


def test_field_roles_are_declared_on_the_fields():
    from lepton_bench.config import RUNTIME_FIELDS, ModelConfig, paths_with, sharing_fields

    assert RUNTIME_FIELDS == ("train.diagnose_every", "device", "data_dir", "precision", "compile", "fused_adamw",
                              "sweep", "log", "log_dir")
    assert sharing_fields() == {"soft_l2", "experts", "adapter_dim", "task_experts", "dselect_k", "dselect_gamma",
                                "dselect_entropy"}
    cfg = make_config("hard-ew")
    assert set(paths_with(cfg, "data")) == {"limit_train", "limit_eval", "holdout_seed"} | {
        f"tasks.{t}.{k}" for t in cfg.tasks
        for k in ("max_len", "truncate", "vocab_size", "min_freq", "holdout_frac", "holdout_max", "train_fraction",
                  "train_count", "label_seed")}
    assert set(paths_with(ModelConfig(), "added")) == {"trunk", "char_dim", "stems", "pretrained", "image_size",
                                                        "task_experts", "dselect_k", "dselect_gamma", "dselect_entropy",
                                                        "freeze_pretrained"}


def test_a_new_field_declared_once_reaches_hash_cache_key_and_design(monkeypatch):
    """A dummy field on each section, declared with ``setting``: nothing else is told about it."""
    import dataclasses

    from lepton_bench import config, report
    from lepton_bench.config import ModelConfig, setting
    from lepton_bench.data import cache_key
    from lepton_bench.tasks import TASKS

    Model = dataclasses.make_dataclass("Model", [("widget", int, setting(0, added=True)),
                                                 ("gate_temp", float, setting(1.0, added=True, sharing=True))],
                                       bases=(ModelConfig,))
    Task = dataclasses.make_dataclass("Task", [("stride", int, setting(1, added=True, data=True)),
                                               ("warm", int, setting(0, added=True))], bases=(TaskConfig,))
    # hash: an 'added' field at its default leaves the run id alone, set it changes it, at any depth
    plain = RunConfig(tasks={"imdb": TaskConfig()})
    assert RunConfig(tasks={"imdb": Task()}, model=Model()).config_hash() == plain.config_hash()
    assert RunConfig(tasks={"imdb": TaskConfig()}, model=Model(widget=2)).config_hash() != plain.config_hash()
    assert RunConfig(tasks={"imdb": Task(warm=3)}).config_hash() != plain.config_hash()
    # cache key: a 'data' field of a task changes the key; a field that is not data does not
    spec = TASKS.get("imdb")
    key = lambda t: cache_key(spec, t, None, 0, None, None)   # noqa: E731
    assert key(Task(stride=2)) != key(Task(stride=1))
    assert key(Task(warm=5)) == key(Task())
    # and the run-level data settings: hold-out seed and limits
    assert len({cache_key(spec, Task(), None, *args) for args in
                [(0, None, None), (1, None, None), (0, 64, None), (0, None, 32)]}) == 4
    # design label: a model field off its default is part of the design; a sharing-only one is not
    monkeypatch.setattr(config, "ModelConfig", Model)
    assert report.design_of({"model": {"widget": 2}}, "imdb") == "default stem → transformer×2 (widget=2)"
    assert report.design_of({"model": {"widget": 0, "gate_temp": 3.0}}, "imdb") == report.design_of({}, "imdb")

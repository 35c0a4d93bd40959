"""A test-only plugin, written as a user would write one from the README: a task that reads
CoNLL-2003's part-of-speech column, under its own name, from the dataset of the core ``conll2003``
task (one ``--data-dir`` folder, separate caches). Registering it adds ``stl-conll2003_pos_demo``;
``tests/conftest.py`` loads it with ``load_plugins(["tests.pos_demo_plugin"])``, so the tests
parametrized over the registries train it with no test written for it.

(A demo name: the core has its own ``conll2003_pos`` task; this one shows how a plugin declares one.)
"""

from lepton_bench.config import TaskConfig
from lepton_bench.tasks import POS_TAGS, TASKS, TaskSpec, register_task

# POS_TAGS: the 47 Penn Treebank tags in the dataset's order (its parquet files' embedded HF features),
# declared once in lepton_bench.tasks for its conll2003_pos task; label id i is POS_TAGS[i].

POS_DEMO = register_task(TaskSpec(
    name="conll2003_pos_demo", help="CoNLL-2003 part-of-speech tags, 47 per word (test plugin)",
    dataset=TASKS.get("conll2003").dataset,          # the same Hub id, revision and folder
    input="text", output="tag", columns={"input": "tokens", "label": "pos_tags"},
    labels=POS_TAGS, metrics=("token_accuracy",), has_validation=True, pretokenized=True,
    defaults=TaskConfig(batch_size=64, eval_batch_size=256, max_len=128, vocab_size=30000, min_freq=1)))

"""A test-only plugin, written as a user would write one from the README: a task that reads
CoNLL-2003's part-of-speech column, under its own name, from the dataset of the core ``conll2003``
task (one ``--data-dir`` folder, separate caches). Registering it adds ``stl-conll2003_pos_demo``;
``tests/conftest.py`` loads it with ``load_plugins(["tests.pos_demo_plugin"])``, so the tests
parametrized over the registries train it with no test written for it.

(A demo name: the core will get its own ``conll2003_pos`` task.)
"""

from lepton_bench.config import TaskConfig
from lepton_bench.tasks import TASKS, TaskSpec, register_task

# The 47 Penn Treebank tags in the dataset's order (its parquet files' embedded HF features,
# ``pos_tags: List(ClassLabel(names=[...]))``): label id i is POS_TAGS[i].
POS_TAGS = ('"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ",
            "JJR", "JJS", "LS", "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$",
            "RB", "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT",
            "WP", "WP$", "WRB")

POS_DEMO = register_task(TaskSpec(
    name="conll2003_pos_demo", help="CoNLL-2003 part-of-speech tags, 47 per word (test plugin)",
    dataset=TASKS.get("conll2003").dataset,          # the same Hub id, revision and folder
    input="text", output="tag", columns={"input": "tokens", "label": "pos_tags"},
    labels=POS_TAGS, metrics=("token_accuracy",), has_validation=True, pretokenized=True,
    defaults=TaskConfig(batch_size=64, eval_batch_size=256, max_len=128, vocab_size=30000, min_freq=1)))

"""Each metric against values computed by hand; tasks choose their metrics from the registry."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from lepton_bench.errors import ConfigError
from lepton_bench.tasks import IGNORE, METRICS, TASKS

NER = TASKS.get("conll2003").labels
T = {name: i for i, name in enumerate(NER)}
IMDB, CIFAR10, CONLL = TASKS.get("imdb"), TASKS.get("cifar10"), TASKS.get("conll2003")


def ids(*names):
    return [T[n] for n in names]


def metric(name, pred, gold, labels):
    m = METRICS.get(name)
    if m.output == "class":
        pred, gold = np.asarray(pred), np.asarray(gold)
    return m.fn(pred, gold, tuple(labels))


def test_classification_by_hand():
    # class 0: tp=2 fp=0 fn=1 -> F1 0.8; class 1: tp=1 fp=1 fn=0 -> F1 2/3
    m = IMDB.compute_metrics([0, 1, 1, 0], [0, 1, 0, 0])
    assert list(m) == ["accuracy", "macro_f1", "f1_pos"]   # the task's order: as the records have it
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1_pos"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_macro_f1_counts_absent_classes_as_zero():
    m = CIFAR10.compute_metrics([0, 0], [0, 0])
    assert m["accuracy"] == 1.0 and m["macro_f1"] == pytest.approx(0.1)
    assert list(m) == ["accuracy", "macro_f1"]   # no f1_pos for 10 classes


def test_accuracy_by_hand():
    assert metric("accuracy", [2, 0, 1, 1, 2], [2, 1, 1, 0, 2], "abc") == pytest.approx(3 / 5)


def test_macro_f1_by_hand():
    # class a: tp1 fp1 fn0 -> F1 2/3; b: tp1 fp0 fn2 -> P 1, R 1/3, F1 1/2; c: tp0 fp1 -> 0
    assert metric("macro_f1", [0, 0, 1, 2], [0, 1, 1, 1], "abc") == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_f1_pos_by_hand():
    # positive class 1: tp1 fp2 fn1 -> P 1/3, R 1/2, F1 2PR/(P+R) = 0.4; class 0 plays no part
    assert metric("f1_pos", [1, 1, 1, 0], [1, 0, 0, 1], ("neg", "pos")) == pytest.approx(0.4)
    assert metric("f1_pos", [0, 0], [0, 0], ("neg", "pos")) == 0.0   # no positives anywhere: 0, no warning


def test_entity_f1_by_hand():
    # gold PER, LOC, ORG; pred PER, ORG (LOC missed): P 1, R 2/3 -> F1 0.8
    gold = [ids("B-PER", "O", "B-LOC"), ids("B-ORG", "I-ORG")]
    pred = [ids("B-PER", "O", "O"), ids("B-ORG", "I-ORG")]
    assert metric("entity_f1", pred, gold, NER) == pytest.approx(0.8)


def test_token_accuracy_by_hand():
    # 2 of 4 tokens right, O included; on POS tags too (any tag names)
    assert metric("token_accuracy", [[0, 1, 1], [0]], [[0, 1, 2], [3]], NER) == pytest.approx(0.5)
    pos = TASKS.get("conll2003_pos_demo").labels
    assert metric("token_accuracy", [[21, 22, 7]], [[21, 22, 8]], pos) == pytest.approx(2 / 3)


def test_entity_f1_and_token_accuracy_by_hand():
    gold = [ids("B-PER", "I-PER", "O", "B-LOC"), ids("B-MISC", "O")]
    pred = [ids("B-PER", "I-PER", "O", "B-ORG"), ids("B-MISC", "O")]
    m = CONLL.compute_metrics(pred, gold)
    # entities: gold {PER, LOC, MISC}, pred {PER, ORG, MISC}: tp=2, P=R=2/3
    assert m["entity_f1"] == pytest.approx(2 / 3)
    assert m["token_accuracy"] == pytest.approx(5 / 6)


def test_entity_f1_is_conlleval_compatible():
    # conlleval reads an I- after O as the start of a chunk: this prediction is right
    m = CONLL.compute_metrics([ids("I-PER", "I-PER", "O")], [ids("B-PER", "I-PER", "O")])
    assert m["entity_f1"] == 1.0
    # a wrong boundary is a miss and a false alarm
    m = CONLL.compute_metrics([ids("B-PER", "B-PER", "O")], [ids("B-PER", "I-PER", "O")])
    assert m["entity_f1"] == 0.0


CHUNK = TASKS.get("conll2003_chunk")
C = {name: i for i, name in enumerate(CHUNK.labels)}


def chunks(*names):
    return [C[n] for n in names]


def test_chunk_f1_and_token_accuracy_by_hand():
    # sentence 1: gold chunks NP[0-1], VP[3]; pred NP[0-1], NP[3]: 1 of 2 right, F1 0.5; tokens 3 of 4
    gold1, pred1 = chunks("B-NP", "I-NP", "O", "B-VP"), chunks("B-NP", "I-NP", "O", "B-NP")
    m = CHUNK.compute_metrics([pred1], [gold1])
    assert list(m) == ["chunk_f1", "token_accuracy"]
    assert m["chunk_f1"] == pytest.approx(0.5) and m["token_accuracy"] == pytest.approx(3 / 4)
    # sentence 2: gold PP[0], NP[1-2]; pred PP[0], NP[1], NP[2] (a split chunk: no match, 2 false alarms)
    gold2, pred2 = chunks("B-PP", "B-NP", "I-NP"), chunks("B-PP", "B-NP", "B-NP")
    m = CHUNK.compute_metrics([pred1, pred2], [gold1, gold2])
    # micro over both: tp 2, 5 predicted, 4 gold: P 2/5, R 1/2, F1 = 2PR/(P+R) = 4/9; tokens 5 of 7
    assert m["chunk_f1"] == pytest.approx(4 / 9) and m["token_accuracy"] == pytest.approx(5 / 7)
    # conlleval-compatible, as entity_f1 (one implementation): an I- after O starts a chunk
    assert CHUNK.compute_metrics([chunks("I-NP", "I-NP", "O")], [chunks("B-NP", "I-NP", "O")])["chunk_f1"] == 1.0
    labels = CHUNK.labels
    assert metric("chunk_f1", [pred1, pred2], [gold1, gold2], labels) == \
        metric("entity_f1", [pred1, pred2], [gold1, gold2], labels)
    assert METRICS.help("chunk_f1") != METRICS.help("entity_f1")


def test_untyped_spans_by_hand():
    spans = TASKS.get("conll2003_spans")
    S = {name: i for i, name in enumerate(spans.labels)}
    gold = [[S[t] for t in ("B-ENT", "I-ENT", "O", "B-ENT", "B-ENT")]]
    pred = [[S[t] for t in ("B-ENT", "I-ENT", "O", "B-ENT", "I-ENT")]]
    # gold spans [0-1], [3], [4]; pred [0-1], [3-4]: tp 1, P 1/2, R 1/3, F1 0.4; tokens 4 of 5
    m = spans.compute_metrics(pred, gold)
    assert m == {"entity_f1": pytest.approx(0.4), "token_accuracy": pytest.approx(4 / 5)}


def test_tagging_loss_ignores_padding():
    spec = TASKS.get("conll2003")
    logits = torch.randn(2, 4, 9)
    target = torch.tensor([[1, 2, IGNORE, IGNORE], [0, 0, 0, IGNORE]])
    real = target != IGNORE
    expected = torch.nn.functional.cross_entropy(logits[real], target[real])
    assert spec.loss(logits, target) == pytest.approx(expected.item())
    logits[~real] = 1e4   # garbage on padded positions changes nothing
    assert spec.loss(logits, target) == pytest.approx(expected.item())


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_computes_its_metrics_primary_first(task):
    """Every registered task (plugins' included): its metrics, in its order, 1.0 when all is right."""
    spec = TASKS.get(task)
    every = list(range(spec.num_labels))   # each label once (macro F1 counts absent classes as 0)
    gold = [every, every[:1]] if spec.output == "tag" else every
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # e.g. seqeval's "... seems not to be NE tag"
        m = spec.compute_metrics(gold, gold)
    assert list(m) == list(spec.metrics) and list(m)[0] == spec.primary
    assert all(v == 1.0 for v in m.values())


@pytest.mark.parametrize("name", METRICS.list())
def test_every_metric_gives_one_when_right_and_less_when_wrong(name):
    """Every registered metric (plugins' included), on labels its checks accept."""
    m = METRICS.get(name)
    labels = NER if m.output == "tag" else ("neg", "pos")
    assert m.check is None or m.check(labels) is None
    right, wrong = ([[1, 2, 0], [5]], [[0, 0, 0], [0]]) if m.output == "tag" else ([1, 0, 1, 1], [0, 1, 0, 0])
    assert metric(name, right, right, labels) == 1.0
    assert 0.0 <= metric(name, wrong, right, labels) < 1.0
    assert METRICS.help(name)


def declare(base, **changes):
    return dataclasses.replace(base, name="metric_test_task", **changes)


def test_a_task_declaring_an_unknown_metric_fails_with_close_matches():
    with pytest.raises(ConfigError, match=r"task metric_test_task: unknown metric 'acuracy'; did you mean accuracy"):
        declare(IMDB, metrics=("acuracy",))


def test_a_task_declaring_a_metric_of_the_other_output_kind_fails():
    with pytest.raises(ConfigError, match=r"metric entity_f1 scores tag outputs, metric_test_task has class "
                                          r"outputs \(metrics for those: accuracy, f1_pos, macro_f1\)"):
        declare(IMDB, metrics=("accuracy", "entity_f1"))
    with pytest.raises(ConfigError, match="metric accuracy scores class outputs"):
        declare(CONLL, metrics=("accuracy",))


def test_a_metric_that_does_not_fit_the_labels_fails_at_declaration():
    with pytest.raises(ConfigError, match=r"metric f1_pos does not apply: it needs 2 classes .*not 10"):
        declare(CIFAR10, metrics=("accuracy", "f1_pos"))
    pos = TASKS.get("conll2003_pos_demo")   # entity F1 over POS tags: what every tagging task got before
    with pytest.raises(ConfigError, match=r"metric entity_f1 does not apply: its labels are not IOB tags"):
        declare(pos, metrics=("entity_f1",))
    with pytest.raises(ConfigError, match=r"metric chunk_f1 does not apply: its labels are not IOB tags"):
        declare(TASKS.get("conll2003_pos"), metrics=("chunk_f1",))
    with pytest.raises(ConfigError, match="metrics must be distinct"):
        declare(IMDB, metrics=())

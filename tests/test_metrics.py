"""Each metric against values computed by hand."""

import pytest
import torch

from lepton_bench.tasks import IGNORE, TASKS, classification_metrics, tagging_metrics

NER = TASKS.get("conll2003").labels
T = {name: i for i, name in enumerate(NER)}


def ids(*names):
    return [T[n] for n in names]


def test_classification_by_hand():
    # class 0: tp=2 fp=0 fn=1 -> F1 0.8; class 1: tp=1 fp=1 fn=0 -> F1 2/3
    m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1_pos"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_macro_f1_counts_absent_classes_as_zero():
    m = classification_metrics([0, 0], [0, 0], 10)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == pytest.approx(0.1)
    assert "f1_pos" not in m


def test_entity_f1_and_token_accuracy_by_hand():
    gold = [ids("B-PER", "I-PER", "O", "B-LOC"), ids("B-MISC", "O")]
    pred = [ids("B-PER", "I-PER", "O", "B-ORG"), ids("B-MISC", "O")]
    m = tagging_metrics(pred, gold, NER)
    # entities: gold {PER, LOC, MISC}, pred {PER, ORG, MISC}: tp=2, P=R=2/3
    assert m["entity_f1"] == pytest.approx(2 / 3)
    assert m["token_accuracy"] == pytest.approx(5 / 6)


def test_entity_f1_is_conlleval_compatible():
    # conlleval reads an I- after O as the start of a chunk: this prediction is right
    m = tagging_metrics([ids("I-PER", "I-PER", "O")], [ids("B-PER", "I-PER", "O")], NER)
    assert m["entity_f1"] == 1.0
    # a wrong boundary is a miss and a false alarm
    m = tagging_metrics([ids("B-PER", "B-PER", "O")], [ids("B-PER", "I-PER", "O")], NER)
    assert m["entity_f1"] == 0.0


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
def test_every_task_has_a_primary_metric_it_computes(task):
    spec = TASKS.get(task)
    if spec.output == "tag":
        m = spec.compute_metrics([ids("B-PER")], [ids("B-PER")])
    else:
        m = spec.compute_metrics([0, 1], [0, 1])
    assert list(m)[0] == spec.primary or spec.primary in m
    assert set(spec.metrics) <= set(m)
    assert m[spec.primary] == 1.0

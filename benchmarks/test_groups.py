"""What one encoder pass for an input group saves: CoNLL-2003 NER + POS + chunking (the `tagging`
grid's BiLSTM design) trained and served by one hard-shared model, against the three STL models.

* training: the `tagging-hard-ew` step ÷ the sum of the three `tagging-stl-*` steps (aim ≤ 0.45);
* inference: one pass of the shared model over the test split, predicting all three tasks, ÷ the
  three STL models' passes (forward + argmax; metrics are left out: they cost the same either way;
  aim ≤ 0.4).

Each figure is the median of rounds taken in turn (shared, then each STL model), after warm-up.
"""

from __future__ import annotations

import statistics

import torch

from lepton_bench.data import eval_batches
from lepton_bench.run.evaluation import autocast
from lepton_bench.variants import TAGGING

from .conftest import Steps, timed

ROUNDS, WARMUP = 7, 2


def interleaved(fns: list, device, rounds: int = ROUNDS, warmup: int = WARMUP) -> list[float]:
    """Median seconds of each of ``fns``, run in turn round after round (drift hits all alike)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            times[i].append(timed(fn, device))
    return [statistics.median(t) for t in times]


def test_group_training_step_vs_the_stl_steps(benchmark, setup_of):
    group = setup_of("tagging-hard-ew")
    stls = [setup_of(f"tagging-stl-{t}") for t in TAGGING]
    benchmark.group = "input group: training step"
    steps = Steps(group)
    benchmark.pedantic(steps, rounds=3, warmup_rounds=1)
    assert steps.step >= 1
    if benchmark.enabled:
        shared, *alone = interleaved([Steps(group), *(Steps(s) for s in stls)], group.device)
        ratio = shared / sum(alone)
        benchmark.extra_info.update({"shared_step_ms": shared * 1e3, "stl_steps_ms": sum(alone) * 1e3,
                                     "step_ratio": ratio})
        assert ratio <= 0.45, f"one NER+POS+chunk step costs {ratio:.2f} of the three STL steps"


def inference(s, tasks: list[str]):
    """One pass over a group's test split predicting ``tasks`` (forward + argmax on the device)."""
    split = s.eval_data[s.group_of[tasks[0]]].splits["test"]
    batch_size = s.cfg.tasks[tasks[0]].eval_batch_size

    @torch.no_grad()
    def go():
        s.model.eval()
        for _, batch in eval_batches(split, batch_size, s.device):
            with autocast(s.device, s.runtime["precision"]):
                for logits in s.model.forward_group(tasks, batch).values():
                    logits.argmax(-1)
        s.model.train()

    return go


def test_group_inference_vs_the_stl_models(benchmark, setup_of):
    group = setup_of("tagging-hard-ew", limit_train=512)   # inference only: the train split does not matter
    stls = [setup_of(f"tagging-stl-{t}", limit_train=512) for t in TAGGING]
    benchmark.group = "input group: inference"
    shared_pass = inference(group, list(TAGGING))
    benchmark.pedantic(shared_pass, rounds=2, warmup_rounds=1)
    if benchmark.enabled:
        shared, *alone = interleaved([shared_pass, *(inference(s, [t]) for s, t in zip(stls, TAGGING, strict=True))],
                                     group.device, rounds=5, warmup=1)
        ratio = shared / sum(alone)
        benchmark.extra_info.update({"shared_pass_s": shared, "stl_passes_s": sum(alone), "inference_ratio": ratio})
        assert ratio <= 0.4, f"serving the three tasks with one model costs {ratio:.2f} of three STL models"


def test_jacobian_on_the_shared_features_vs_on_the_shared_parameters(benchmark, setup_of):
    """MGDA's two Jacobians on the NER+POS+chunk group: rows w.r.t. the shared parameters (3 backwards
    through the encoder, a 3 × 2.5 M matrix: `tagging-hard-mgda`) against rows w.r.t. the shared
    features (backwards stopping at the features, one into the encoder: `tagging-hard-mgda_ub`,
    MGDA-UB), each ÷ the `tagging-hard-ew` step."""
    setups = [setup_of(v) for v in ("tagging-hard-mgda", "tagging-hard-mgda_ub", "tagging-hard-ew")]
    benchmark.group = "input group: Jacobian rows"
    steps = Steps(setups[1])
    benchmark.pedantic(steps, rounds=3, warmup_rounds=1)
    assert steps.step >= 1
    if benchmark.enabled:
        params, features, ew = interleaved([Steps(s) for s in setups], setups[0].device)
        benchmark.extra_info.update({"params_step_ms": params * 1e3, "features_step_ms": features * 1e3,
                                     "ew_step_ms": ew * 1e3, "params_vs_ew": params / ew,
                                     "features_vs_ew": features / ew})
        assert features < params, "the features Jacobian should cost less than the parameters one"

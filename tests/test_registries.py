"""Every registered trunk, sampler, weighting and grid — core or plugin — is exercised here, with no
test written for it, by the checks of ``lepton_bench.testing`` a plugin's own tests call too (variants,
tasks, stems and architectures are trained in test_train.py and test_models.py the same way)."""

from __future__ import annotations

import pytest

from lepton_bench.grid.plan import plan
from lepton_bench.grid.presets import GRIDS
from lepton_bench.methods import WEIGHTINGS
from lepton_bench.models.trunk import TRUNKS
from lepton_bench.run.sampling import SAMPLERS
from lepton_bench.testing import check_sampler, check_trunk, check_weighting
from lepton_bench.variants import VARIANTS


@pytest.mark.parametrize("name", TRUNKS.list())
def test_every_trunk_keeps_the_shape_and_keeps_padding_out_of_real_tokens(name):
    check_trunk(name)


@pytest.mark.parametrize("name", SAMPLERS.list())
def test_every_sampler_draws_known_tasks_reproducibly_and_each_of_them(name):
    check_sampler(name)


@pytest.mark.parametrize("name", WEIGHTINGS.list())
def test_every_weighting_fills_finite_gradients_and_passes_a_non_finite_loss_through(name):
    check_weighting(name)


@pytest.mark.parametrize("name", GRIDS.list())
def test_every_grid_plans_registered_variants_with_distinct_run_ids(name):
    runs = plan(name, seeds=2)
    assert runs
    assert len({r.run_id for r in runs}) == len(runs)
    assert all(r.config.variant in VARIANTS for r in runs)
    assert {r.config.seed for r in runs} == {0, 1}

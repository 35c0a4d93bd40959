"""The Gramian of the task losses' Jacobian w.r.t. the shared parameters by torchjd's autogram engine,
for the gradient methods whose weights depend on the Gramian alone (``weighting_args.autogram=true``).

The engine accumulates J J^T module by module during one batched backward of the task losses, without
holding the Jacobian; the update is then one backward of the weighted losses (Quinton & Rey 2024,
Section 6; ``torchjd.autogram.Engine``). Two things the public engine does not do are done here, on its
documented parts (``Engine._make_gramian_computer``, ``Engine._module_hook_manager``):

- it hooks each module *with direct parameters*, which reaches ``nn.LSTM`` itself, whose
  ``PackedSequence`` input its hook cannot walk; here the hooked modules are the outermost ones whose
  parameters are all shared (a stem as a whole: token ids in, a tensor out);
- its hooks count every forward that requires grad, and a forward not followed by ``compute_gramian``
  (a diagnostic's, say) would leave the next Gramian waiting for a backward that never comes; here
  ``tracking()`` clears that count before the training step's forward. Outside ``compute_gramian`` the
  engine's nodes pass gradients through untouched, so every other backward is an ordinary one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError


def outermost_shared_modules(model: nn.Module, shared: list[torch.Tensor]) -> list[nn.Module]:
    """The outermost submodules of ``model`` that are called (not containers) and whose parameters are
    all shared (none a child of another); an error naming a shared parameter no such module holds (held
    directly by a module with task-specific parameters too)."""
    shared_ids = {id(p) for p in shared}
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        params = [p for p in module.parameters() if p.requires_grad]
        called = not isinstance(module, (nn.ModuleDict, nn.ModuleList, nn.ParameterDict, nn.ParameterList))
        if called and params and all(id(p) in shared_ids for p in params):   # a container is never called
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    covered = {id(p) for m in found for p in m.parameters()}
    missing = [name for name, p in model.named_parameters() if id(p) in shared_ids and id(p) not in covered]
    if missing:
        raise ConfigError(f"weighting_args.autogram: the shared parameter {missing[0]} sits in a module with "
                          f"task-specific parameters too, which the autogram engine cannot hook; use autogram=false")
    return found


class GramianEngine:
    """torchjd's autogram engine over a model's shared modules, tracking only inside ``tracking()``."""

    def __init__(self, model: nn.Module, shared: list[torch.Tensor]):
        from torchjd.autogram import Engine

        self.engine = Engine(batch_dim=None)   # no module yet: they are hooked below, as a whole
        for module in outermost_shared_modules(model, shared):
            computer = self.engine._make_gramian_computer(module)
            self.engine._gramian_computers[module] = computer
            self.engine._module_hook_manager.hook_module(module, computer)

    @contextmanager
    def tracking(self) -> Iterator[None]:
        """The forwards inside are the ones whose Gramian ``gramian`` computes (earlier ones forgotten)."""
        for computer in self.engine._gramian_computers.values():
            computer.reset()
        self.engine._target_edges.reset()
        yield

    def gramian(self, losses: list[torch.Tensor]) -> torch.Tensor:
        """J J^T w.r.t. the shared parameters of the task losses of the tracked forward, [T, T], in fp32."""
        with warnings.catch_warnings():
            # vmap has no batching rule for some backwards (packed sequences' in the BiLSTM stem, CPU
            # attention's in torch 2.14) and loops over the tasks there, as the per-task path does anyway:
            # the same Gramian, at that cost (measured: docs/methods.md)
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet "
                                    "implemented the batching rule")
            return self.engine.compute_gramian(torch.stack(losses)).float()

"""One run: what it trains with (``setup``), the loop and its record (``train``), evaluation, measurement
(clocks, memory, FLOPs), gradient diagnostics, experiment trackers, torchrun data parallelism, the input
groups' batches and the samplers. Import the module you need (``from lepton_bench.run.train import run``):
this package's ``__init__`` imports nothing, so a light module here (``runenv``) stays light."""

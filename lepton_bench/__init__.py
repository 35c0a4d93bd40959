"""lepton_bench: does one multi-task model beat one model per task, on quality and on cost?"""

__version__ = "0.1.0"

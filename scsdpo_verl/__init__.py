"""scsdpo_verl: SDPO and SC-SDPO (pass-rate weighted self-distillation) for LLM RL.

Subpackages:
- ``core``: the objectives (torch only; the single home of every formula).
- ``tasks``: task formats, scorers, loaders and synthetic twins.
- ``local``: a small-model CPU backend.
- ``verl_plugin``: the verl 0.9.1 backend (policy-loss modes and trainer extension).
"""

__version__ = "0.1.0"

"""Evaluation with lm-eval: packaged generative tasks (mean@k, exact and bootstrap maj@k) and the runner."""

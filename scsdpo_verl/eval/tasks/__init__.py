"""Data-only package: the lm-eval task YAMLs (a package so that wheels ship them)."""

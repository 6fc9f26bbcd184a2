"""Data-only package: report captions (.rst) of the tables and figures (a package so that wheels ship them)."""

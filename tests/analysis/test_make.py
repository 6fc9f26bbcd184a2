"""The rule entry points write every table and figure, and every output has a report caption."""

from __future__ import annotations

import pytest

from scsdpo_verl.analysis.figures import FIGURES
from scsdpo_verl.analysis.make import TABLES, caption_path, make_figures, make_tables
from scsdpo_verl.pipeline import FIGURE_NAMES

from .conftest import CONFIG


@pytest.mark.slow  # renders and saves all 8 figures (about 10 s on 2 cores)
def test_make_tables_and_figures(results_dir, tmp_path):
    tables = make_tables(CONFIG, results_dir, tmp_path / "tables")
    assert set(tables) == set(TABLES)
    for name in TABLES:
        for suffix in (".csv", ".md", ".tex"):
            assert (tmp_path / "tables" / f"{name}{suffix}").stat().st_size > 0
    figures = make_figures(CONFIG, results_dir, tmp_path / "figures")
    assert list(figures) == list(FIGURES)
    for name in FIGURES:
        for suffix in (".png", ".pdf"):
            assert (tmp_path / "figures" / f"{name}{suffix}").stat().st_size > 0


def test_every_output_has_a_caption_and_the_workflow_agrees_on_names():
    assert tuple(FIGURE_NAMES) == FIGURES
    for name in (*TABLES, *FIGURES):
        assert caption_path(name).read_text().strip()

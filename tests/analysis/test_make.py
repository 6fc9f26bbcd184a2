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


def _render_rst(text: str) -> tuple[str, str]:
    """(HTML body, docutils messages) of a reStructuredText text, as Snakemake's report renders captions."""
    import io

    from docutils.core import publish_parts

    messages = io.StringIO()
    body = publish_parts(text, writer="html",
                         settings_overrides={"report_level": 1, "halt_level": 5, "warning_stream": messages})["body"]
    return body, messages.getvalue()


def test_every_caption_renders_without_a_docutils_message():
    for name in (*TABLES, *FIGURES):
        body, messages = _render_rst(caption_path(name).read_text())
        assert messages == "" and "system-message" not in body, f"{name}: {messages}"


def test_the_report_landing_text_renders_with_a_config():
    import jinja2
    import yaml

    from scsdpo_verl.analysis.make import CAPTION_DIR

    class Snakemake:  # what Snakemake hands the landing text's Jinja template
        config = yaml.safe_load((CAPTION_DIR.parents[2] / "config" / "default.yaml").read_text())

    text = (CAPTION_DIR.parents[2] / "workflow" / "report" / "workflow.rst").read_text()
    body, messages = _render_rst(jinja2.Template(text).render(snakemake=Snakemake))
    assert messages == "" and "qwen3-tiny, olmo3-tiny" in body


def test_the_caption_check_sees_a_substitution_error():
    _, messages = _render_rst("the |advantage| of a sample")
    assert "Undefined substitution" in messages

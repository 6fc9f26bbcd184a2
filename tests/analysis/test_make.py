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


def _partial_results(root):
    """The fake results with evaluations missing as in a run in progress: tool/sdpo seed 1 and the tool base
    not evaluated; grpo seed 0 on sci finished training (summary.json) and the rest still training."""
    import shutil

    from .conftest import write_results

    config = write_results(root)
    shutil.rmtree(root / "eval" / "tiny" / "tool" / "sdpo" / "seed1")
    shutil.rmtree(root / "eval" / "tiny" / "tool" / "base" / "seed0")
    (root / "runs" / "tiny" / "sci" / "grpo" / "seed0" / "summary.json").write_text("{}")
    return config


def test_gains_so_far_uses_the_seeds_evaluated_so_far(tmp_path):
    from scsdpo_verl.analysis.make import gains_so_far

    config = _partial_results(tmp_path)
    text = gains_so_far(config, tmp_path)
    # 1 model x (2 tasks x 3 methods + 1 task x 2 ablation variants) x 2 seeds = 16 runs, 15 of them evaluated
    assert text.splitlines()[0] == ("1 of 16 runs trained, 15 of 16 evaluated, base evaluated on 1 of 2 model x "
                                    "task")
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:4]): line for line in text.splitlines()
            if line.startswith("| tiny")}
    # tool: SC-SDPO (0.40, 0.40) - SDPO (0.30, -): seed 0 only, +10.0 points, one seed, no interval
    tool_delta = rows[("tiny", "SC-SDPO − SDPO", "tool", "final mean@16")]
    assert "+10.0" in tool_delta and "| 1 |" in tool_delta
    # sci: SC-SDPO (0.50, 0.70) - SDPO (0.40, 0.50) paired: (0.10, 0.20), mean +15.0 over 2 seeds
    assert "+15.0" in rows[("tiny", "SC-SDPO − SDPO", "sci", "final mean@16")]
    assert "| 2 |" in rows[("tiny", "SC-SDPO − SDPO", "sci", "final mean@16")]
    # sci: GRPO (0.40, 0.44) - base 0.30 = (0.10, 0.14), mean +12.0
    assert "+12.0" in rows[("tiny", "GRPO − Base", "sci", "final mean@16")]
    # no base on tool: no Method − Base row there
    assert not [key for key in rows if key[2] == "tool" and key[1].endswith("Base")]


def test_gains_so_far_before_any_evaluation(tmp_path):
    from scsdpo_verl.analysis.make import gains_so_far

    from .conftest import CONFIG

    (tmp_path / "runs" / "tiny" / "sci" / "grpo" / "seed0").mkdir(parents=True)  # training, no config yet
    assert gains_so_far(CONFIG, tmp_path).splitlines() == [
        "0 of 16 runs trained, 0 of 16 evaluated, base evaluated on 0 of 2 model x task", "no evaluation yet"]


def test_the_gains_so_far_command_reads_a_config_file_as_the_workflow_does(tmp_path, capsys):
    import yaml

    from scsdpo_verl.pipeline import ConfigProblem, main

    from .conftest import CONFIG

    config = _partial_results(tmp_path / "results")
    config["models"] = {"tiny": {"kind": "tiny", "name": "qwen3-tiny"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["gains-so-far", "--configfile", str(tmp_path / "run.yaml"), "--results",
                 str(tmp_path / "results")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("1 of 16 runs trained, 15 of 16 evaluated")
    assert "| tiny | SC-SDPO − SDPO | sci | final mean@16 | +15.0" in printed
    # a broken config file fails naming its key, as the workflow's validation does
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump({**CONFIG, "seeds": "many"}))
    with pytest.raises(ConfigProblem, match="seeds"):
        main(["gains-so-far", "--configfile", str(tmp_path / "broken.yaml"), "--results", str(tmp_path / "results")])

"""The generation-budget check: worked solutions that do not fit in max_new_tokens / max_gen_toks are reported."""

from __future__ import annotations

import pandas as pd
import pytest

from scsdpo_verl.eval.runner import warn_if_solutions_exceed
from scsdpo_verl.local import trainer
from scsdpo_verl.local.data import generation_budget_warning, solutions_over_budget
from tests.local.conftest import fake_rows


class WordTokenizer:
    """One token per whitespace-separated word: lengths a test can count by eye."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": list(range(len(text.split())))}


def row(solution: str | None, difficulty: int | None) -> dict:
    info = {} if difficulty is None else {"difficulty": difficulty}
    if solution is not None:
        info["solution"] = solution
    return {"extra_info": info}


def test_counts_per_level_with_the_end_token_on_the_boundary():
    rows = [row("a b c", 1),          # 3 words + end token = 4: fits a budget of 4
            row("a b c d", 1),        # 5 > 4
            row("a b c d e f", 2),    # 7 > 4
            row("a", 2),              # 2
            row(None, 2),             # no worked solution: not counted
            row("", 3),               # empty: not counted
            row("a b c d", None)]     # no level: counted under None
    assert solutions_over_budget(WordTokenizer(), rows, 4) == {1: (1, 2), 2: (1, 2), None: (1, 1)}
    assert solutions_over_budget(WordTokenizer(), rows, 5) == {1: (0, 2), 2: (1, 2), None: (0, 1)}
    assert solutions_over_budget(WordTokenizer(), rows, 7) == {1: (0, 2), 2: (0, 2), None: (0, 1)}


def test_the_warning_names_the_setting_the_source_and_the_short_levels():
    rows = [row("a b c", 1), row("a b c d e f", 2), row("a b c d e f g", 2), row("a", 2)]
    text = generation_budget_warning(WordTokenizer(), rows, 4, "max_new_tokens", "train.parquet")
    assert text.startswith("WARNING max_new_tokens = 4 tokens")
    assert "2 of the 4 worked solutions of train.parquet" in text
    assert "level 2: 2 of 3" in text and "level 1" not in text
    assert generation_budget_warning(WordTokenizer(), rows, 8, "max_new_tokens", "train.parquet") is None
    assert generation_budget_warning(WordTokenizer(), [row(None, 1)], 1, "max_new_tokens", "x") is None


@pytest.mark.parametrize("budget, warns", [(4, True), (200, False)])
def test_the_trainer_warns_before_training_when_the_budget_cuts_solutions(fake_task, tiny_config, caplog, budget,
                                                                          warns):
    caplog.set_level("WARNING", logger=trainer.logger.name)
    trainer.train(tiny_config(total_steps=1, max_new_tokens=budget, method="grpo"))
    messages = [r.getMessage() for r in caplog.records if r.name == trainer.logger.name]
    assert any(m.startswith(f"WARNING max_new_tokens = {budget} tokens") for m in messages) == warns


def test_the_evaluation_warns_when_max_gen_toks_cuts_solutions(tiny_base, tmp_path, caplog):
    path = tmp_path / "test.parquet"
    pd.DataFrame(fake_rows(6, 0, "test")).to_parquet(path)
    caplog.set_level("WARNING")
    text = warn_if_solutions_exceed(tiny_base, path, 4)
    assert text is not None and "max_gen_toks = 4 tokens" in text and "6 of the 6" in text
    assert text in caplog.text
    assert warn_if_solutions_exceed(tiny_base, path, 4, limit=2).count("of the 2 worked") == 1
    assert warn_if_solutions_exceed(tiny_base, path, 500) is None

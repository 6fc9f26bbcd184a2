"""Synthetic twins: determinism, level spread, uniqueness, disjoint splits, worked solutions, grading."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from scsdpo_verl.tasks import compute_score, load_task_rows
from scsdpo_verl.tasks.schema import validate_row
from scsdpo_verl.tasks.synthetic import TASKS, generate, split_of
from scsdpo_verl.tasks.tooluse import parse_gold


@pytest.fixture(scope="module")
def train_rows() -> dict[str, list[dict]]:
    return {task: generate(task, 1000, seed=0) for task in TASKS}


def _score(row: dict, response: str) -> float:
    return compute_score(row["data_source"], response, row["reward_model"]["ground_truth"], row["extra_info"])[
        "score"]


@pytest.mark.parametrize("task", TASKS)
def test_deterministic(task, train_rows):
    assert generate(task, 1000, seed=0) == train_rows[task]
    assert generate(task, 50, seed=1) == generate(task, 50, seed=1)
    assert generate(task, 50, seed=1) != generate(task, 50, seed=2)
    assert generate(task, 50, seed=1, split="test") != generate(task, 50, seed=1)


@pytest.mark.parametrize("task", TASKS)
def test_rows_follow_the_schema(task, train_rows):
    for i, row in enumerate(train_rows[task]):
        validate_row(row, row_number=i)
        assert row["data_source"] == task
        assert row["extra_info"]["index"] == i and row["extra_info"]["split"] == "train"
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]


@pytest.mark.parametrize("task", TASKS)
def test_levels_are_balanced(task, train_rows):
    counts = Counter(r["extra_info"]["difficulty"] for r in train_rows[task])
    assert counts == {level: 200 for level in range(1, 6)}
    odd = Counter(r["extra_info"]["difficulty"] for r in generate(task, 13, seed=0))
    assert sorted(odd.values()) == [2, 2, 3, 3, 3]


@pytest.mark.parametrize("task", TASKS)
def test_questions_unique_and_ids_stable(task, train_rows):
    rows = train_rows[task]
    ids = [r["extra_info"]["question_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert len({r["prompt"][-1]["content"] for r in rows}) == len(rows)
    # the same question drawn under another seed keeps its id
    other = {r["prompt"][-1]["content"].split("\n\nA: ")[0]: r["extra_info"]["question_id"]
             for r in generate(task, 1000, seed=5)}
    shared = [r for r in rows if r["prompt"][-1]["content"].split("\n\nA: ")[0] in other]
    assert shared, "expected some overlap between seeds"
    for r in shared:
        assert other[r["prompt"][-1]["content"].split("\n\nA: ")[0]] == r["extra_info"]["question_id"]


@pytest.mark.parametrize("task", TASKS)
def test_train_and_test_share_no_question(task, train_rows):
    test_ids = set()
    for seed in (0, 1, 2):
        test = generate(task, 150, seed=seed, split="test")
        assert {r["extra_info"]["split"] for r in test} == {"test"}
        test_ids |= {r["extra_info"]["question_id"] for r in test}
    train_ids = {r["extra_info"]["question_id"] for r in train_rows[task]}
    train_ids |= {r["extra_info"]["question_id"] for r in generate(task, 300, seed=7)}
    assert train_ids.isdisjoint(test_ids)


def test_split_of_is_about_one_in_ten():
    keys = [f"question {i}" for i in range(5000)]
    for split in ("test", "validation"):
        share = sum(split_of("synthetic_science", k) == split for k in keys) / len(keys)
        assert 0.08 < share < 0.12


@pytest.mark.parametrize("task", TASKS)
def test_validation_shares_no_question_with_train_or_test(task, train_rows):
    validation = generate(task, 150, seed=0, split="validation")
    assert {r["extra_info"]["split"] for r in validation} == {"validation"}
    ids = {r["extra_info"]["question_id"] for r in validation}
    test = {r["extra_info"]["question_id"] for seed in (0, 1) for r in generate(task, 150, seed=seed, split="test")}
    assert ids.isdisjoint({r["extra_info"]["question_id"] for r in train_rows[task]}) and ids.isdisjoint(test)


@pytest.mark.parametrize("task", TASKS)
def test_every_worked_solution_scores_one(task, train_rows):
    rows = train_rows[task] + generate(task, 100, seed=3, split="test")
    for row in rows:
        result = compute_score(row["data_source"], row["extra_info"]["solution"], row["reward_model"]["ground_truth"])
        assert result["score"] == 1.0 and result["acc"] is True and result["feedback"] == "", row


def test_wrong_science_answers_score_zero(train_rows):
    for row in train_rows["synthetic_science"][:200]:
        gold = row["reward_model"]["ground_truth"]
        letters = re.findall(r"^([A-D]): ", row["prompt"][-1]["content"], flags=re.M)
        assert gold in letters and len(letters) in (2, 4)
        for wrong in set(letters) - {gold}:
            assert _score(row, row["extra_info"]["solution"].replace(f"<answer>{gold}", f"<answer>{wrong}")) == 0.0


def test_wrong_tool_calls_score_zero(train_rows):
    for row in train_rows["synthetic_tooluse"][:200]:
        names, inputs = parse_gold(row["reward_model"]["ground_truth"])
        solution = row["extra_info"]["solution"]
        assert _score(row, solution.split("\nAction: ")[0] if len(names) > 1 else "Action: none") == 0.0
        key, value = next(iter(inputs[0].items()))
        wrong_value = json.dumps(str(value) if isinstance(value, int) else value + "x")  # type or text off
        old = f'"{key}":{json.dumps(value)}'
        assert old in solution
        assert _score(row, solution.replace(old, f'"{key}":{wrong_value}', 1)) == 0.0


def test_science_difficulty_means_more_steps(train_rows):
    steps = {level: set() for level in range(1, 6)}
    for row in train_rows["synthetic_science"]:
        reasoning = re.search(r"<reasoning>(.*)</reasoning>", row["extra_info"]["solution"]).group(1)
        steps[row["extra_info"]["difficulty"]].add(reasoning.count(";") + 1)
    assert steps == {1: {1}, 2: {1}, 3: {2}, 4: {3}, 5: {4}}
    # more digits to carry at each level (an independent proxy for the arithmetic load)
    mean_digits = []
    for level in range(1, 6):
        solutions = [r["extra_info"]["solution"] for r in train_rows["synthetic_science"]
                     if r["extra_info"]["difficulty"] == level]
        mean_digits.append(sum(len(re.findall(r"\d", s)) for s in solutions) / len(solutions))
    assert mean_digits == sorted(mean_digits) and mean_digits[4] > 3 * mean_digits[0]


def test_science_choices_and_letters(train_rows):
    by_level = {level: Counter() for level in range(1, 6)}
    gold_letters = Counter()
    for row in train_rows["synthetic_science"]:
        user = row["prompt"][-1]["content"]
        options = re.findall(r"^[A-D]: (.*)$", user, flags=re.M)
        assert len(set(options)) == len(options), user  # distractors distinct
        assert user.endswith("\nPlease reason step by step.")
        by_level[row["extra_info"]["difficulty"]][len(options)] += 1
        if len(options) == 4:
            gold_letters[row["reward_model"]["ground_truth"]] += 1
    assert by_level[1][2] > 20 and by_level[5][2] == 0 and by_level[4][2] == 0  # some 2-choice, at low levels
    assert min(gold_letters.values()) > 0.18 * sum(gold_letters.values())  # the answer is not always "A"


def test_tooluse_difficulty_means_more_calls_arguments_and_tools(train_rows):
    stats = {level: set() for level in range(1, 6)}
    apis = {level: set() for level in range(1, 6)}
    for row in train_rows["synthetic_tooluse"]:
        names, inputs = parse_gold(row["reward_model"]["ground_truth"])
        n_tools = row["prompt"][-1]["content"].split("\nQuestion:")[0].count("\n")
        stats[row["extra_info"]["difficulty"]].add((len(names), sum(len(i) for i in inputs), n_tools))
        apis[row["extra_info"]["difficulty"]].update(names)
        assert len(set(names)) == len(names)
        keys = [k for i in inputs for k in i]
        assert len(set(keys)) == len(keys)  # no argument name shared by two calls
    assert stats[1] == {(1, 1, 1)}
    assert stats[2] == {(1, 2, 2)}
    assert stats[3] == {(1, 3, 3)}
    assert stats[4] == {(2, 2, 4), (2, 3, 4)}
    assert stats[5] == {(2, 4, 5), (3, 3, 5)}
    # one-call levels draw from as many APIs each, so the arguments, not fewer shapes to learn, set the difficulty
    assert len(apis[1]) == len(apis[2]) == len(apis[3]) == 7


def test_prompts_and_solutions_stay_short(train_rows):
    for rows in train_rows.values():
        for row in rows:
            assert len(" ".join(m["content"] for m in row["prompt"]).split()) < 90
            assert len(row["extra_info"]["solution"]) < 170


def test_levels_argument_and_errors():
    rows = generate("synthetic_tooluse", 20, seed=0, levels=[5])
    assert {r["extra_info"]["difficulty"] for r in rows} == {5}
    with pytest.raises(ValueError, match="unknown synthetic task"):
        generate("synthetic_math", 5, seed=0)
    with pytest.raises(ValueError, match="levels"):
        generate("synthetic_science", 5, seed=0, levels=[0, 6])
    with pytest.raises(ValueError, match="split"):
        generate("synthetic_science", 5, seed=0, split="dev")
    with pytest.raises(RuntimeError, match="no unused test question left at level 1"):
        generate("synthetic_tooluse", 200, seed=0, split="test", levels=[1])


def test_load_task_rows_generates_synthetic():
    rows = load_task_rows("synthetic_science", n=10, seed=4, split="test")
    assert rows == generate("synthetic_science", 10, seed=4, split="test")
    with pytest.raises(ValueError, match="takes no path"):
        load_task_rows("synthetic_tooluse", "some/file.json")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        # right number, right letter
        ("<reasoning>3 kg = 3000 g; 3000 / 10 = 300; 300 * 7 = 2100</reasoning><answer>B</answer>", (True, True, True)),
        # right number, wrong letter: the lookup failed
        ("<reasoning>300 * 7 = 2100</reasoning><answer>C</answer>", (True, False, False)),
        # wrong number that is an option, and its letter: the lookup worked on a wrong result
        ("<reasoning>30 * 7 = 210</reasoning><answer>C</answer>", (False, True, False)),
        # wrong number not among the options, a lucky letter
        ("<reasoning>300 * 7 = 4800</reasoning><answer>B</answer>", (False, False, True)),
        # no number, no answer tag
        ("<reasoning>none</reasoning>", (False, False, False)),
        # the number is the reasoning's last result, not one after it
        ("<reasoning>a = 2100</reasoning><answer>B</answer> = 300", (True, True, True)),
    ],
)
def test_answer_diagnosis_separates_the_number_from_the_letter(response, expected):
    from scsdpo_verl.tasks.science import format_mcq_question
    from scsdpo_verl.tasks.synthetic.science import answer_diagnosis

    question = format_mcq_question("How many g?", ["300", "2100", "210", "21000"])
    got = answer_diagnosis(response, question, "B")
    assert (got["number_right"], got["letter_matches_number"], got["correct"]) == expected


@pytest.mark.parametrize(
    ("gold", "walk"),
    [("A", "A: 300"), ("C", "A: 300; B: 2100; C: 210"), ("D", "A: 300; B: 2100; C: 210; D: 21000")],
)
def test_walk_options_solution_restates_the_lines_up_to_the_gold_one(gold, walk):
    from scsdpo_verl.tasks.science import format_mcq_question
    from scsdpo_verl.tasks.synthetic.science import walk_options_solution

    question = format_mcq_question("How many g are in 3 kg? A: 1", ["300", "2100", "210", "21000"])
    solution = f"<reasoning>3 * 100 = 300</reasoning><answer>{gold}</answer>"
    assert walk_options_solution(solution, question, gold) == (
        f"<reasoning>3 * 100 = 300; {walk}</reasoning><answer>{gold}</answer>")


def test_walk_options_solution_refuses_a_letter_that_is_no_option():
    from scsdpo_verl.tasks.science import format_mcq_question
    from scsdpo_verl.tasks.synthetic.science import walk_options_solution

    question = format_mcq_question("How many g?", ["300", "2100"])
    with pytest.raises(ValueError, match="'C' is not an option"):
        walk_options_solution("<reasoning>x</reasoning><answer>C</answer>", question, "C")
    with pytest.raises(ValueError, match="no </reasoning>"):
        walk_options_solution("<answer>A</answer>", question, "A")


def test_walk_options_solution_keeps_a_generated_rows_answer_and_ends_on_its_gold_line():
    from scsdpo_verl.tasks import synthetic
    from scsdpo_verl.tasks.science import extract_answer, mcq_options
    from scsdpo_verl.tasks.synthetic.science import walk_options_solution

    for row in synthetic.generate("synthetic_science", 30, 3, split="train"):
        question, gold = row["prompt"][-1]["content"], row["reward_model"]["ground_truth"]
        walked = walk_options_solution(row["extra_info"]["solution"], question, gold)
        assert extract_answer(walked) == gold
        last_line = walked.split("</reasoning>")[0].rsplit("; ", 1)[-1]
        assert last_line == f"{gold}: {mcq_options(question)[gold]}"


@pytest.mark.parametrize("gold", ["A", "C"])
def test_tag_options_solution_restates_every_line_with_its_letter_and_ends_on_the_gold_letter(gold):
    from scsdpo_verl.tasks.science import format_mcq_question
    from scsdpo_verl.tasks.synthetic.science import tag_options_solution

    question = format_mcq_question("How many g are in 3 kg? A: 1", ["300", "2100", "210"])
    solution = f"<reasoning>3 * 100 = 300</reasoning><answer>{gold}</answer>"
    assert tag_options_solution(solution, question, gold) == (
        f"<reasoning>A: 300 A; B: 2100 B; C: 210 C; 3 * 100 = 300 {gold}</reasoning><answer>{gold}</answer>")
    with pytest.raises(ValueError, match="'D' is not an option"):
        tag_options_solution(solution, question, "D")

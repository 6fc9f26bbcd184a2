"""Tool use: parser and scorer on tricky strings, the two loaders, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scsdpo_verl.tasks import TaskDataError, compute_score, load_task_rows
from scsdpo_verl.tasks.reference import ReferenceDataError
from scsdpo_verl.tasks.tooluse import (
    canonical_json,
    gold_disagreements,
    load_sdpo_tooluse,
    load_toolalpaca,
    make_gold,
    parse_actions,
    parse_actions_reference,
    parse_gold,
    score_tooluse,
    score_tooluse_reference,
)

FIXTURES = Path(__file__).parent / "fixtures"
SDPO_TOOLUSE = FIXTURES / "sdpo" / "datasets" / "tooluse"

WEATHER = make_gold([("get_weather", {"city": "Paris", "unit": "C"})])
NESTED = make_gold([("addPet", {"pet": {"name": "Rex", "age": 3, "tags": ["a", "b"]}})])
TWO_CALLS = make_gold([("get_time", {"city": "Oslo"}), ("set_alarm", {"hour": 7, "minute": 5})])


def score(response: str, gold: str) -> float:
    return score_tooluse(response, gold)["score"]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ('Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"}', 1.0),
        ('Thought: easy.\nAction: get_weather\nAction Input: {"unit": "C", "city": "Paris"}', 1.0),  # key order
        ('Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"} and then I wait.', 1.0),  # trailing
        ('Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"}}}', 1.0),  # trailing braces
        ('Action: get_weather\nAction Input:\n```json\n{"city": "Paris", "unit": "C"}\n```', 1.0),  # fence
        ('Action:get_weather\nAction Input:{"city":"Paris","unit":"C"}', 1.0),  # no spaces
        ('Action: get_weather\nAction Input: {"city": "Paris"}', 0.0),  # missing argument
        ('Action: get_weather\nAction Input: {"city": "Paris", "unit": "C", "x": 1}', 0.0),  # extra argument
        ('Action: get_forecast\nAction Input: {"city": "Paris", "unit": "C"}', 0.0),  # wrong tool
        ('Action: get_weather\nAction Input: {"city": "paris", "unit": "C"}', 0.0),  # values are case-sensitive
        ('Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"', 0.0),  # unterminated JSON
        ("Action: get_weather\nAction Input: city=Paris, unit=C", 0.0),  # not JSON
        ('Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"}\n'
         'Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"}', 0.0),  # one call too many
        ('Action: \nAction Input: {"city": "Paris", "unit": "C"}', 0.0),  # no tool name
        ('Action: .\nAction Input: {"city": "Paris", "unit": "C"}', 0.0),
        ('Action: get_weather.\nAction Input: {"city": "Paris", "unit": "C"}', 1.0),  # trailing full stop
        ('Action: get_weather(city, unit)\nAction Input: {"city": "Paris", "unit": "C"}', 1.0),
        ('Action: get-weather\nAction Input: {"city": "Paris", "unit": "C"}', 0.0),  # not the same name
        ('{"city": "Paris", "unit": "C"}', 0.0),  # no Action at all
        ("", 0.0),
    ],
)
def test_single_call_tricky_strings(response, expected):
    result = score_tooluse(response, WEATHER)
    assert result["score"] == expected
    assert result["acc"] is (expected == 1.0)
    assert (result["feedback"] == "") == (expected == 1.0)


def test_names_with_brackets():
    gold = make_gold([("getUser", {"id": "u1"}), ("[Optional]updateUser", {"age": 3})])
    response = 'Action: getUser\nAction Input: {"id": "u1"}\nAction: [Optional]updateUser\nAction Input: {"age": 3}'
    assert score(response, gold) == 1.0


def test_nested_objects_are_parsed_whole():
    response = 'Action: addPet\nAction Input: {"pet": {"name": "Rex", "age": 3, "tags": ["a", "b"]}} done'
    assert score(response, NESTED) == 1.0
    assert parse_actions(response).inputs == [{"pet": {"name": "Rex", "age": 3, "tags": ["a", "b"]}}]
    wrong_inner = 'Action: addPet\nAction Input: {"pet": {"name": "Rex", "age": 4, "tags": ["a", "b"]}}'
    assert score(wrong_inner, NESTED) == 0.0
    list_order = 'Action: addPet\nAction Input: {"pet": {"name": "Rex", "age": 3, "tags": ["b", "a"]}}'
    assert score(list_order, NESTED) == 0.0  # list order matters


def test_several_actions_in_any_order():
    in_order = ('Action: get_time\nAction Input: {"city": "Oslo"}\n'
                'Action: set_alarm\nAction Input: {"hour": 7, "minute": 5}')
    reversed_order = ('Thought: alarm first\nAction: set_alarm\nAction Input: {"minute": 5, "hour": 7}\n'
                      'Observation: ok\nThought: now the time\nAction: get_time\nAction Input: {"city": "Oslo"}')
    assert score(in_order, TWO_CALLS) == score(reversed_order, TWO_CALLS) == 1.0
    assert score_tooluse(in_order, TWO_CALLS)["pred"] == score_tooluse(reversed_order, TWO_CALLS)["pred"]
    only_one = 'Action: get_time\nAction Input: {"city": "Oslo", "hour": 7, "minute": 5}'
    assert score(only_one, TWO_CALLS) == 0.0  # merged inputs agree but a call is missing
    # arguments may travel in either call: the reference compares only the merged dict
    swapped = ('Action: get_time\nAction Input: {"city": "Oslo", "hour": 7}\n'
               'Action: set_alarm\nAction Input: {"minute": 5}')
    assert score(swapped, TWO_CALLS) == 1.0


def test_merge_later_call_overrides_earlier_like_the_reference():
    gold = make_gold([("getTime", {"city": "Oslo"}), ("getTime", {"city": "Lima"})])
    assert parse_gold(gold)[1] == [{"city": "Oslo"}, {"city": "Lima"}]
    right = 'Action: getTime\nAction Input: {"city": "Oslo"}\nAction: getTime\nAction Input: {"city": "Lima"}'
    assert score(right, gold) == 1.0
    # the merged gold is {"city": "Lima"}, so the first call's value is not checked (a reference quirk)
    quirk = 'Action: getTime\nAction Input: {"city": "Rome"}\nAction: getTime\nAction Input: {"city": "Lima"}'
    assert score(quirk, gold) == 1.0


def test_duplicate_keys_last_value_wins():
    assert score('Action: get_weather\nAction Input: {"city": "Rome", "city": "Paris", "unit": "C"}',
                 WEATHER) == 1.0
    assert score('Action: get_weather\nAction Input: {"city": "Paris", "city": "Rome", "unit": "C"}',
                 WEATHER) == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 1.0), ("7.0", 1.0), ("7.5", 0.0), ('"7"', 0.0), ("true", 0.0), ("[7]", 0.0), ("null", 0.0)],
)
def test_types_compare_strictly(value, expected):
    gold = make_gold([("set_alarm", {"hour": 7, "minute": 1})])
    response = f'Action: set_alarm\nAction Input: {{"hour": {value}, "minute": 1}}'
    assert score(response, gold) == expected


def test_bool_is_not_one():
    gold = make_gold([("toggle", {"on": True})])
    assert score('Action: toggle\nAction Input: {"on": true}', gold) == 1.0
    assert score('Action: toggle\nAction Input: {"on": 1}', gold) == 0.0
    assert canonical_json({"a": 1.0, "b": [2.0, True]}) == canonical_json({"b": [2, True], "a": 1})
    assert canonical_json({"a": 1}) != canonical_json({"a": True})


def test_invalid_json_gives_zero_and_says_which_input():
    response = ('Action: get_time\nAction Input: {"city": "Oslo"}\n'
                'Action: set_alarm\nAction Input: {"hour": 7, "minute": 5,}')
    result = score_tooluse(response, TWO_CALLS)
    assert result["score"] == 0.0
    assert "Action Input 2 is not valid JSON" in result["feedback"]
    assert result["pred"].endswith(", invalid")


def test_invalid_extra_input_cannot_be_ignored():
    # the reference would skip the broken block and still give 1; we give 0
    response = ('Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"}\n'
                'Action Input: {"city": ')
    assert score(response, WEATHER) == 0.0


def test_call_without_input_counts_as_empty_arguments():
    gold = make_gold([("getRandomImage", {})])
    assert score("Thought: no arguments needed.\nAction: getRandomImage", gold) == 1.0
    assert score("Action: getRandomImage\nAction Input: {}", gold) == 1.0


def test_pred_is_canonical_and_decides_the_score():
    a = 'Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"}'
    b = 'Thought: hm\nAction: get_weather\nAction Input: {"unit":"C","city":"Paris"} ok'
    assert score_tooluse(a, WEATHER)["pred"] == score_tooluse(b, WEATHER)["pred"]
    assert score_tooluse(a, WEATHER)["pred"] == 'Actions: ["get_weather"], Inputs: {"city": "Paris", "unit": "C"}'


def test_feedback_describes_mismatch():
    feedback = score_tooluse('Action: get_forecast\nAction Input: {"city": "Paris"}', WEATHER)["feedback"]
    assert "Actions mismatch" in feedback and "Action inputs mismatch" in feedback
    assert "No 'Action:' line" in score_tooluse("I do not know.", WEATHER)["feedback"]


@pytest.mark.parametrize(
    "gold", ["not json", "[]", '{"Action": "x"}', '[{"Action": "x"}]', '[{"Action": "x", "Action_Input": "{"}]',
             '[{"Action": "x", "Action_Input": "[1]"}]'],
)
def test_malformed_gold_raises(gold):
    with pytest.raises(ValueError, match="ground truth"):
        score_tooluse("Action: x\nAction Input: {}", gold)


def test_gold_inputs_may_be_objects_or_strings():
    as_object = json.dumps([{"Action": "get_weather", "Action_Input": {"city": "Paris", "unit": "C"}}])
    assert parse_gold(as_object) == parse_gold(WEATHER)


# ------------------------------------------------------------------------------------------------ loaders


def test_toolalpaca_eval_loader():
    rows, report = load_toolalpaca(FIXTURES / "toolalpaca_eval.json", split="test")
    assert report.read == report.kept == 3
    assert [r["extra_info"]["question_id"] for r in rows] == [
        "toolalpaca/Petstore/0", "toolalpaca/Petstore/1", "toolalpaca/Clock/0"]
    user = rows[0]["prompt"][-1]["content"]
    assert "Name: Petstore" in user and "findPets" in user and user.endswith("Question: Show me two cats.")
    assert rows[0]["data_source"] == "tooluse" and rows[0]["ability"] == "tooluse"
    for row in rows:  # the derived worked solutions score 1
        result = compute_score(row["data_source"], row["extra_info"]["solution"], row["reward_model"]["ground_truth"])
        assert result["score"] == 1.0


def test_toolalpaca_train_instances_and_drop_counts():
    rows, report = load_toolalpaca(FIXTURES / "toolalpaca_train.json", split="train")
    assert report.read == 3 and report.kept == 1 and report.dropped == {"no_tool_calls": 2}
    assert rows[0]["prompt"][-1]["content"].endswith("Question: What time is it in Rome?")  # hint removed
    assert parse_gold(rows[0]["reward_model"]["ground_truth"]) == (["getTime"], [{"city": "Rome"}])


def test_sdpo_tooluse_loader_and_detection():
    rows, report = load_sdpo_tooluse(SDPO_TOOLUSE / "test.json", split="test")
    assert report.kept == 3
    assert [r["extra_info"]["question_id"] for r in rows] == ["tooluse/20", "tooluse/21", "tooluse/22"]
    assert rows[0]["prompt"] == [{"role": "user", "content": json.loads(
        (SDPO_TOOLUSE / "test.json").read_text().splitlines()[0])["prompt"]}]
    assert load_task_rows("tooluse", SDPO_TOOLUSE / "test.json", split="test") == rows
    assert load_task_rows("tooluse", FIXTURES / "sdpo", split="test") == rows  # clone root
    assert load_task_rows("tooluse", FIXTURES / "sdpo" / "datasets", split="test") == rows
    assert load_task_rows("tooluse", SDPO_TOOLUSE, split="test", format="sdpo") == rows
    assert load_task_rows("tooluse", FIXTURES / "toolalpaca_eval.json", split="test")[0]["extra_info"][
        "question_id"] == "toolalpaca/Petstore/0"
    for row in rows:
        assert score(row["extra_info"]["solution"], row["reward_model"]["ground_truth"]) == 1.0


def test_sdpo_tooluse_count_check():
    with pytest.raises(ReferenceDataError, match=r"tooluse/test\.json: 3 rows .* has 68"):
        load_task_rows("tooluse", FIXTURES / "sdpo", split="test", check_counts=True)
    # no pinned count for the train split: nothing to check
    assert len(load_task_rows("tooluse", FIXTURES / "sdpo", split="train", check_counts=True)) == 2


def test_bad_tooluse_rows(tmp_path):
    path = tmp_path / "test.json"
    good = {"idx": 0, "prompt": "Q", "answer": WEATHER}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"idx": 1, "prompt": "Q", "answer": "[{oops"}) + "\n")
    with pytest.raises(TaskDataError, match=r"test\.json, row 1, field 'answer': .*not JSON"):
        load_sdpo_tooluse(path)
    path.write_text(json.dumps({"idx": "zero", "prompt": "Q", "answer": WEATHER}) + "\n")
    with pytest.raises(TaskDataError, match=r"row 0, field 'idx': expected int"):
        load_sdpo_tooluse(path)
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"Name": "X", "Description": "d", "NLDocumentation": "doc",
                                   "Instructions": ["a", "b"], "Golden_Answers": [[]]}]))
    with pytest.raises(TaskDataError, match=r"alpaca\.json, row 0, field 'Golden_Answers'"):
        load_toolalpaca(alpaca)
    alpaca.write_text(json.dumps([{"Name": "X", "Description": "d", "Instructions": ["a"],
                                   "Golden_Answers": [[]]}]))
    with pytest.raises(TaskDataError, match=r"field 'NLDocumentation': missing"):
        load_toolalpaca(alpaca)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(TaskDataError, match="neither SDPO"):
        load_task_rows("tooluse", unknown)


# ------------------------------------------------------------------------------------------------ the two scorers

OPTIONAL = make_gold([("getUser", {"id": "u1"}), ("[Optional]updateUser", {"age": 3})])
COUNT = make_gold([("set_count", {"n": 1})])


@pytest.mark.parametrize(
    ("response", "gold", "strict", "reference"),
    [
        # agree
        ('Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"}', WEATHER, 1.0, 1.0),
        ('Action: get_weather\nAction Input: {"city": "Paris"}', WEATHER, 0.0, 0.0),
        ('Action: get_weather.\nAction Input: {"city": "Paris", "unit": "C"}', WEATHER, 1.0, 1.0),  # \w+ stops at "."
        # a nested input: the reference reads '{"pet": {"name": "Rex", "age": 3, "tags": ["a", "b"]}' (first "}"),
        # cannot decode it and drops it, so its inputs are {} and never the gold ones
        ('Action: addPet\nAction Input: {"pet": {"name": "Rex", "age": 3, "tags": ["a", "b"]}}', NESTED, 1.0, 0.0),
        # a tool name that is not one word: the reference finds no name at "[" for the second call
        ('Action: getUser\nAction Input: {"id": "u1"}\nAction: [Optional]updateUser\nAction Input: {"age": 3}',
         OPTIONAL, 1.0, 0.0),
        # Python's == in the reference: true == 1; strict compares JSON types
        ('Action: set_count\nAction Input: {"n": true}', COUNT, 0.0, 1.0),
        # an undecodable extra input: skipped silently by the reference, an error for strict
        ('Action: set_count\nAction Input: {"n": 1}\nAction Input: {n: 2}', COUNT, 0.0, 1.0),
        # the reference's \s* crosses the line break after "Action:"; strict wants the name on the same line
        ('Action:\nset_count\nAction Input: {"n": 1}', COUNT, 0.0, 1.0),
        # a fenced input: strict skips the fence, the reference needs "{" right after the whitespace
        ('Action: set_count\nAction Input: ```json\n{"n": 1}\n```', COUNT, 1.0, 0.0),
    ],
)
def test_strict_and_reference_scorers_on_strings_where_they_differ(response, gold, strict, reference):
    assert score_tooluse(response, gold)["score"] == strict
    assert score_tooluse_reference(response, gold)["score"] == reference
    # compute_score picks the scorer from the row's extra_info (default strict)
    assert compute_score("tooluse", response, gold, {"scorer": "reference"})["score"] == reference
    assert compute_score("tooluse", response, gold, {"scorer": "strict"})["score"] == strict
    assert compute_score("tooluse", response, gold, {"index": 0})["score"] == strict


def test_reference_scorer_pred_and_merge_hand_worked():
    # names in order (a multiset for the score), inputs merged with dict.update in order, printed as Python does
    response = ('Action: set_alarm\nAction Input: {"hour": 7, "minute": 5}\n'
                'Action: get_time\nAction Input: {"city": "Oslo"}')
    result = score_tooluse_reference(response, TWO_CALLS)
    assert result["score"] == 1.0 and result["acc"] is True and result["feedback"] == ""
    assert result["pred"] == "Actions: ['set_alarm', 'get_time'], Inputs: {'hour': 7, 'minute': 5, 'city': 'Oslo'}"
    assert parse_actions_reference('Action: f\nAction Input: {"a": {"b": 1}}\nAction Input: {"c": 2} x') == (
        ["f"], {"c": 2})
    wrong = score_tooluse_reference("no call here", TWO_CALLS)
    assert wrong["score"] == 0.0 and wrong["pred"] == "Actions: [], Inputs: {}" and wrong["feedback"]


def test_unknown_scorer_is_refused_naming_it():
    with pytest.raises(ValueError, match="unknown tool-use scorer 'loose'"):
        compute_score("tooluse", "x", COUNT, {"scorer": "loose"})
    with pytest.raises(ValueError, match=r"extra_info\.scorer 'reference' applies to tool use only"):
        compute_score("synthetic_science", "<answer>A</answer>", "A", {"scorer": "reference"})


def test_gold_disagreements_on_the_fixture_split():
    rows, _ = load_sdpo_tooluse(SDPO_TOOLUSE / "test.json", split="test")
    # item 20's gold answer has a nested input ({"pet": {"name": "Nemo", "age": 1}}); 21 and 22 are flat
    assert gold_disagreements(rows) == ["tooluse/20"]

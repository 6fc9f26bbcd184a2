"""Science MCQ: scorer on tricky strings, the 90/10 split, the two loaders, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scsdpo_verl.tasks import TaskDataError, load_task_rows
from scsdpo_verl.tasks.reference import ReferenceDataError
from scsdpo_verl.tasks.science import (
    SYSTEM_PROMPT,
    extract_answer,
    format_mcq_question,
    load_sciknoweval,
    load_sdpo_science,
    mcq_options,
    score_mcq,
    split_indices,
)

FIXTURES = Path(__file__).parent / "fixtures"
SDPO_ROOT = FIXTURES / "sdpo"

# ------------------------------------------------------------------------------------------------ scorer


@pytest.mark.parametrize(
    ("response", "pred", "score"),
    [
        ("<reasoning>x</reasoning><answer>C</answer>", "C", 1.0),
        ("<answer>\n  C \n</answer>", "C", 1.0),  # whitespace and newlines around the letter
        ("<answer>A</answer> no wait <answer>C</answer>", "C", 1.0),  # the last tag wins
        ("<answer>C</answer> no wait <answer>A</answer>", "A", 0.0),
        ("<reasoning>r</reasoning><answer>C", "C", 1.0),  # missing closing tag: the rest of the text
        ("<answer>C\nbecause", "C\nbecause", 0.0),
        ("<answer>c</answer>", "c", 0.0),  # lower case does not count (reference rule)
        ("<answer>C.</answer>", "C.", 0.0),
        ("<answer>(C)</answer>", "(C)", 0.0),
        ("<answer></answer>", "", 0.0),
        ("The answer is C", "The answer is C", 0.0),  # no tag: the whole text is the prediction
        ("  C  ", "C", 1.0),  # ... so a bare letter counts, as in the reference
        ("", "", 0.0),
        ("<answer>C</answer></answer>", "C", 1.0),
    ],
)
def test_score_mcq_tricky_strings(response, pred, score):
    result = score_mcq(response, "C")
    assert result["pred"] == pred
    assert result["score"] == score
    assert result["acc"] is (score == 1.0)
    assert (result["feedback"] == "") == (score == 1.0)


def test_extract_answer_matches_a_hand_written_rule():
    # independent restatement: find the last "<answer>", cut at the next "</answer>"
    text = "a<answer> B </answer>b<answer> D </answer>tail"
    start = text.rfind("<answer>") + len("<answer>")
    end = text.find("</answer>", start)
    assert extract_answer(text) == text[start:end].strip() == "D"


def test_feedback_names_the_problem_without_revealing_the_gold_letter():
    assert "no <answer>" in score_mcq("I think B", "C")["feedback"]
    assert "not a single capital option letter" in score_mcq("<answer>b</answer>", "C")["feedback"]
    wrong = score_mcq("<answer>B</answer>", "C")["feedback"]
    assert "incorrect" in wrong and "C" not in wrong


def test_gold_letter_is_stripped():
    assert score_mcq("<answer>A</answer>", " A\n")["score"] == 1.0


# ------------------------------------------------------------------------------------------------ split


@pytest.mark.parametrize("n", [10, 47, 500, 935, 2100])
def test_split_indices_proportions_and_disjointness(n):
    train, test = split_indices(n, seed=42)
    assert len(test) == math.ceil(0.1 * n)
    assert len(train) == n - len(test)
    assert set(train).isdisjoint(test)
    assert sorted(train + test) == list(range(n))
    assert split_indices(n, seed=42) == (train, test)  # deterministic
    assert split_indices(n, seed=43) != (train, test)


def test_split_indices_matches_datasets_train_test_split():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"i": list(range(94))})
    expected = ds.train_test_split(test_size=0.1, seed=42)
    train, test = split_indices(94, test_fraction=0.1, seed=42)
    assert train == expected["train"]["i"]
    assert test == expected["test"]["i"]


def _hf_record(domain: str, i: int, level: str = "L3", kind: str = "mcq-4-choices") -> dict:
    return {"question": f"{domain} question {i}?", "choices": {"text": ["w", "x", "y", "z"],
            "label": ["A", "B", "C", "D"]}, "answerKey": "ABCD"[i % 4], "domain": domain, "type": kind,
            "details": {"level": level}}


@pytest.fixture
def hf_file(tmp_path: Path) -> Path:
    """Per domain 30/47/60/95 kept rows, plus rows the filter must drop."""
    records = []
    for domain, n in (("Chemistry", 30), ("Physics", 47), ("Biology", 60), ("Material", 95)):
        records += [_hf_record(domain, i) for i in range(n)]
        records.append(_hf_record(domain, 999, level="L1"))
        records.append(_hf_record(domain, 998, kind="true_or_false"))
    path = tmp_path / "sciknoweval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_sciknoweval_split_is_90_10_per_domain_deterministic_and_disjoint(hf_file):
    train, report = load_sciknoweval(hf_file, split="train")
    test, _ = load_sciknoweval(hf_file, split="test")
    for domain, n in (("chemistry", 30), ("physics", 47), ("biology", 60), ("material", 95)):
        n_train = sum(r["extra_info"]["domain"] == domain for r in train)
        n_test = sum(r["extra_info"]["domain"] == domain for r in test)
        assert (n_train, n_test) == (n - math.ceil(0.1 * n), math.ceil(0.1 * n))
    train_ids = {r["extra_info"]["question_id"] for r in train}
    assert train_ids.isdisjoint(r["extra_info"]["question_id"] for r in test)
    assert load_sciknoweval(hf_file, split="train")[0] == train
    assert report.dropped["level_not_L3"] == 4 and report.dropped["type_not_mcq"] == 4
    assert report.read == len(train) + len(test) + 8


def test_sciknoweval_fixture_filters_and_formats():
    report: list = []
    rows = load_task_rows("science", FIXTURES / "sciknoweval_hf.jsonl", split="train", report=report)
    test = load_task_rows("science", FIXTURES / "sciknoweval_hf.jsonl", split="test")
    assert len(rows) + len(test) == 7  # 9 records, one L2 and one open-ended dropped
    assert report[0]["dropped"]["level_not_L3"] == 1 and report[0]["dropped"]["type_not_mcq"] == 1
    row = next(r for r in rows + test if "zinc" in r["prompt"][1]["content"])
    assert row["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert row["prompt"][1]["content"] == (
        "Which gas is formed when zinc reacts with dilute acid?\n\nA: oxygen\nB: hydrogen\nC: chlorine\n"
        "D: nitrogen\nPlease reason step by step.")
    assert row["reward_model"] == {"style": "rule", "ground_truth": "B"}
    assert row["data_source"] == "sciknoweval/chemistry"
    assert row["extra_info"]["difficulty"] == 0 and row["extra_info"]["solution"] == ""


def test_sciknoweval_domain_selection(hf_file):
    rows, report = load_sciknoweval(hf_file, split="train", domains=["Physics"])
    assert {r["extra_info"]["domain"] for r in rows} == {"physics"}
    assert report.dropped["domain_not_selected"] == 30 + 60 + 95
    with pytest.raises(TaskDataError, match="unknown domain"):
        load_sciknoweval(hf_file, domains=["astronomy"])


# ------------------------------------------------------------------------------------------------ bad input


def _write(tmp_path: Path, records: list[dict], name: str = "bad.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_missing_field_names_file_row_and_field(tmp_path):
    records = [_hf_record("Chemistry", i) for i in range(4)]
    del records[3]["answerKey"]
    path = _write(tmp_path, records)
    with pytest.raises(TaskDataError, match=r"bad\.jsonl, row 3, field 'answerKey': missing"):
        load_sciknoweval(path)


def test_missing_nested_field(tmp_path):
    records = [_hf_record("Chemistry", 0)]
    del records[0]["details"]["level"]
    with pytest.raises(TaskDataError, match=r"row 0, field 'details.level'"):
        load_sciknoweval(_write(tmp_path, records))


def test_unknown_domain_in_data(tmp_path):
    records = [_hf_record("Chemistry", 0), _hf_record("Astronomy", 1)]
    with pytest.raises(TaskDataError, match=r"row 1, field 'domain': unknown domain 'Astronomy'"):
        load_sciknoweval(_write(tmp_path, records))


def test_gold_not_among_labels(tmp_path):
    records = [_hf_record("Chemistry", 0)]
    records[0]["answerKey"] = "E"
    with pytest.raises(TaskDataError, match=r"field 'answerKey'"):
        load_sciknoweval(_write(tmp_path, records))


def test_malformed_json_lines_names_the_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(_hf_record("Chemistry", 0)) + "\n{not json\n")
    with pytest.raises(TaskDataError, match=r"broken\.jsonl.*line 2"):
        load_sciknoweval(path)


def test_malformed_json_array(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"question": 1},\n {oops}]')
    with pytest.raises(TaskDataError, match=r"broken\.json.*line 2"):
        load_task_rows("science", path)


def test_json_array_and_parquet_inputs_give_the_same_rows(tmp_path, hf_file):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [json.loads(line) for line in hf_file.read_text().splitlines()]
    array_file = tmp_path / "rows.json"
    array_file.write_text(json.dumps(records, indent=1))
    parquet_file = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet_file)
    expected = load_sciknoweval(hf_file, split="test")[0]
    assert load_sciknoweval(array_file, split="test")[0] == expected
    assert load_sciknoweval(parquet_file, split="test")[0] == expected


# ------------------------------------------------------------------------------------------------ SDPO layout


def test_sdpo_file_loader_maps_rows():
    rows, report = load_sdpo_science(SDPO_ROOT / "datasets/sciknoweval/chemistry/train.json", split="train")
    assert report.read == report.kept == 3
    assert [r["extra_info"]["question_id"] for r in rows] == [
        "sciknoweval/chemistry/4", "sciknoweval/chemistry/0", "sciknoweval/chemistry/2"]
    first = rows[0]
    assert first["prompt"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": format_mcq_question("Which ion makes a solution acidic?",
                                                        ["OH-", "H+", "Na+", "Cl-"])},
    ]
    assert first["reward_model"]["ground_truth"] == "B"
    assert first["extra_info"]["index"] == 4 and first["extra_info"]["split"] == "train"


def test_sdpo_layout_auto_detected_from_clone_root_and_file():
    from_clone = load_task_rows("science", SDPO_ROOT, split="test", domains=["chemistry", "physics"])
    assert [r["data_source"] for r in from_clone] == ["sciknoweval/chemistry", "sciknoweval/physics"]
    for folder in (SDPO_ROOT / "datasets", SDPO_ROOT / "datasets" / "sciknoweval"):
        assert load_task_rows("science", folder, split="test", domains=["chemistry", "physics"]) == from_clone
    from_file = load_task_rows("science", SDPO_ROOT / "datasets/sciknoweval/physics/test.json", split="test")
    assert from_file == from_clone[1:]
    explicit = load_task_rows("science", SDPO_ROOT / "datasets/sciknoweval/physics/test.json", split="test",
                              format="sdpo")
    assert explicit == from_file


def test_sdpo_clone_missing_domain_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match=r"biology/train\.json"):
        load_task_rows("science", SDPO_ROOT, split="train")  # the fixture clone has no biology folder


def test_sdpo_row_missing_answer(tmp_path):
    folder = tmp_path / "chemistry"
    folder.mkdir()
    path = _write(folder, [{"idx": 0, "prompt": "Q?\n\nA: x\nB: y\nPlease reason step by step."},
                           {"idx": 1, "answer": "A"}], name="train.json")
    with pytest.raises(TaskDataError, match=r"train\.json, row 0, field 'answer': missing"):
        load_sdpo_science(path)


def test_sdpo_unknown_domain_folder(tmp_path):
    path = _write(tmp_path, [{"idx": 0, "answer": "A", "prompt": "Q\n\nA: x\nPlease reason step by step."}],
                  name="train.json")
    with pytest.raises(TaskDataError, match="cannot tell the domain"):
        load_sdpo_science(path)


def test_sdpo_count_check_fails_loudly_with_the_file_name():
    path = SDPO_ROOT / "datasets/sciknoweval/chemistry/train.json"
    with pytest.raises(ReferenceDataError, match=r"chemistry/train\.json: 3 rows .* has 1890"):
        load_sdpo_science(path, split="train", check_counts=True)
    with pytest.raises(ReferenceDataError, match="1890"):
        load_task_rows("science", SDPO_ROOT, split="train", domains=["chemistry"], check_counts=True)


def test_hf_and_sdpo_paths_agree(tmp_path, hf_file):
    """The reference pipeline (datasets filter -> idx -> train_test_split -> format), re-enacted here with the
    ``datasets`` library, gives files that our SDPO loader maps to exactly the rows of our HF loader."""
    datasets = pytest.importorskip("datasets")
    records = [json.loads(line) for line in hf_file.read_text().splitlines()]
    for domain in ("Chemistry", "Physics", "Biology", "Material"):
        kept = [r for r in records if r["domain"] == domain and r["details"]["level"] == "L3"
                and r["type"] in ("mcq-4-choices", "mcq-2-choices")]
        ds = datasets.Dataset.from_list([{
            "idx": i, "answer": r["answerKey"], "system": SYSTEM_PROMPT,
            "prompt": r["question"] + "\n\n" + "\n".join(f"{lab}: {txt}" for lab, txt in
                                                       zip(r["choices"]["label"], r["choices"]["text"],
                                                           strict=True)) + "\nPlease reason step by step.",
        } for i, r in enumerate(kept)])
        parts = ds.train_test_split(test_size=0.1, seed=42)
        for split in ("train", "test"):
            out = tmp_path / "clone" / domain.lower() / f"{split}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            parts[split].to_json(out)
    for split in ("train", "test"):
        ours = load_sciknoweval(hf_file, split=split)[0]
        theirs = load_task_rows("science", tmp_path / "clone", split=split)
        assert theirs == ours


def test_mcq_options_reads_back_the_option_lines_of_a_question():
    question = format_mcq_question("Mass of 2 L?\nD: not an option, part of the stem", ["2100", "0.5 kg", "B: x"])
    # the stem's lines come before the blank line; only the option block's "L: text" lines are options
    assert mcq_options(question) == {"A": "2100", "B": "0.5 kg", "C": "B: x"}
    assert mcq_options("What is 2 + 2?\nPlease reason step by step.") == {}

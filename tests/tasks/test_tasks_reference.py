"""Reference splits: pinned counts, count checks, file hashes."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from scsdpo_verl.tasks import load_task_rows
from scsdpo_verl.tasks.reference import (
    PINNED_SPLIT_COUNTS,
    REFERENCE_FILES,
    ReferenceDataError,
    check_split_count,
    check_split_counts,
    count_rows,
    git_blob_sha1,
    sha256_file,
    verify_file,
    verify_reference_clone,
)

FIXTURES = Path(__file__).parent / "fixtures"


def test_pinned_counts_are_the_papers():
    assert PINNED_SPLIT_COUNTS == {
        ("chemistry", "train"): 1890, ("chemistry", "test"): 210, ("physics", "train"): 720,
        ("physics", "test"): 80, ("biology", "train"): 450, ("biology", "test"): 50,
        ("material", "train"): 841, ("material", "test"): 94, ("tooluse", "test"): 68,
    }
    # 90/10 with ceil on the test side reproduces every pinned science pair
    for domain in ("chemistry", "physics", "biology", "material"):
        total = PINNED_SPLIT_COUNTS[(domain, "train")] + PINNED_SPLIT_COUNTS[(domain, "test")]
        assert PINNED_SPLIT_COUNTS[(domain, "test")] == -(-total // 10)
    assert all(len(p["git_blob_sha1"]) == 40 for p in REFERENCE_FILES.values())


def test_check_split_count():
    check_split_count("chem/train.json", "chemistry", "train", 1890)
    check_split_count("tool/train.json", "tooluse", "train", 12345)  # not pinned: nothing to compare
    with pytest.raises(ReferenceDataError, match=r"chem/test\.json: 209 rows loaded for chemistry/test.*210"):
        check_split_count("chem/test.json", "chemistry", "test", 209)


def test_check_split_counts_reports_every_mismatch():
    good = {("physics", "train"): ("p/train.json", 720), ("tooluse", "test"): ("t/test.json", 68)}
    assert check_split_counts(good) == {("physics", "train"): 720, ("tooluse", "test"): 68}
    bad = {**good, ("biology", "test"): ("b/test.json", 49), ("material", "train"): ("m/train.json", 842)}
    with pytest.raises(ReferenceDataError) as err:
        check_split_counts(bad)
    assert "b/test.json" in str(err.value) and "m/train.json" in str(err.value)
    assert "p/train.json" not in str(err.value)


def test_count_rows_on_loaded_fixture_and_custom_pins():
    rows = load_task_rows("science", FIXTURES / "sdpo", split="train", domains=["chemistry", "physics"])
    rows += load_task_rows("tooluse", FIXTURES / "sdpo", split="test")
    counts = count_rows(rows)
    assert counts == {("chemistry", "train"): 3, ("physics", "train"): 1, ("tooluse", "test"): 3}
    files = {key: (f"{key[0]}/{key[1]}.json", n) for key, n in counts.items()}
    check_split_counts(files, expected={("chemistry", "train"): 3, ("tooluse", "test"): 3})
    with pytest.raises(ReferenceDataError, match=r"tooluse/test\.json: 3 rows"):
        check_split_counts(files)


def test_hashes_match_independent_computations(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    assert sha256_file(path) == hashlib.sha256(b"hello\n").hexdigest()
    assert git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"
    try:
        out = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == git_blob_sha1(path)
    except (FileNotFoundError, subprocess.CalledProcessError):
        pass


def test_verify_file(tmp_path):
    path = tmp_path / "train.json"
    path.write_bytes(b'{"idx": 0}\n')
    verify_file(path, sha256=sha256_file(path))
    verify_file(path, git_blob=git_blob_sha1(path))
    with pytest.raises(ReferenceDataError, match=r"train\.json: SHA-256 .* does not match"):
        verify_file(path, sha256="0" * 64)
    with pytest.raises(ReferenceDataError, match=r"train\.json: git blob id"):
        verify_file(path, git_blob="0" * 40)
    with pytest.raises(ReferenceDataError, match=r"gone\.json: reference file is missing"):
        verify_file(tmp_path / "gone.json", sha256="0" * 64)
    with pytest.raises(ValueError, match="give sha256"):
        verify_file(path)


def test_verify_reference_clone(tmp_path):
    (tmp_path / "datasets").mkdir()
    good = tmp_path / "datasets" / "a.json"
    good.write_text("a\n")
    pins = {"datasets/a.json": {"sha256": sha256_file(good), "git_blob_sha1": None}}
    assert verify_reference_clone(tmp_path, pins) == [good]
    pins["datasets/b.json"] = {"sha256": "0" * 64}
    with pytest.raises(ReferenceDataError, match=r"b\.json: reference file is missing"):
        verify_reference_clone(tmp_path, pins)

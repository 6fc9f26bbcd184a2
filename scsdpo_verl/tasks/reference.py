"""The SDPO reference's published splits: pinned files, hashes and row counts, and their checks.

The reference repository (``lasgroup/SDPO``) commits the processed splits its paper used. A run that wants the
paper's exact data points the loaders at a clone (``load_task_rows("science", "<clone>", format="sdpo")``) and,
once loaded, checks the row counts against the pinned ones (``check_split_counts``); the workflow's data rule
verifies each downloaded file with ``verify_file`` against ``REFERENCE_FILES``.

Hashes were computed from the repository at ``REFERENCE_COMMIT``. ``datasets/tooluse/train.json`` was not in the
stored snapshot, so only its git blob id is known (``git_blob_sha1`` verifies it; the SHA-256 is None) and its
row count is not pinned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

REFERENCE_REPO = "lasgroup/SDPO"
REFERENCE_COMMIT = "0e6d5106abe69f578c63bf38a9394e22905c8773"
RAW_URL = f"https://raw-githubusercontent-com.hhj520.top/{REFERENCE_REPO}/{REFERENCE_COMMIT}/{{path}}"

# (domain, split) -> rows; "tooluse" is the tool-use task's domain.
PINNED_SPLIT_COUNTS: dict[tuple[str, str], int] = {
    ("chemistry", "train"): 1890, ("chemistry", "test"): 210,
    ("physics", "train"): 720, ("physics", "test"): 80,
    ("biology", "train"): 450, ("biology", "test"): 50,
    ("material", "train"): 841, ("material", "test"): 94,
    ("tooluse", "test"): 68,
}

# path in the repository -> sha256 of the file, git blob id, size in bytes (None where unknown)
REFERENCE_FILES: dict[str, dict[str, str | int | None]] = {
    "datasets/sciknoweval/biology/train.json": {
        "sha256": "7ffbfe4a85c7386e2ca78abd3de82c84d339ecbf0beb9bff93f3e599ac6298f2",
        "git_blob_sha1": "cbf2bc599eaf09c1384bcf0fd0737dc73885ae1c", "bytes": 605352},
    "datasets/sciknoweval/biology/test.json": {
        "sha256": "0ffe8df8f33154ca6af90c75b278f8602d75376db79e295e16a29fc9a5da325a",
        "git_blob_sha1": "166c4562910c235a50d28bb75a01e454784e746a", "bytes": 66613},
    "datasets/sciknoweval/chemistry/train.json": {
        "sha256": "dc841dc92a16a6af3944336ecd887e80907bc9244f2bd51cd2e3869959a84029",
        "git_blob_sha1": "2c4cb4fcb22f7a18770d3c75b2e858dca0186668", "bytes": 2227709},
    "datasets/sciknoweval/chemistry/test.json": {
        "sha256": "772adb9f2bdb1bbc2a542f350b55a1b23091fa98e793f5e24c5dba410ce299bf",
        "git_blob_sha1": "7356e65b1a803710460e941cc7b471dc473e34b7", "bytes": 244955},
    "datasets/sciknoweval/material/train.json": {
        "sha256": "7da3afdc3194ae575e4e28f331fbc5f402dee7f2446f8294f15f619c509e111f",
        "git_blob_sha1": "848767d48095b4c08fed315b07f96003c458e9ab", "bytes": 1715905},
    "datasets/sciknoweval/material/test.json": {
        "sha256": "2b3d7e3bcebda39ba47856ea5aae5ebcd0b3ba43b1e750cd4b02e40056b079cf",
        "git_blob_sha1": "b90ab6a44daf9ea929b70946a29b0e506d03ec41", "bytes": 185646},
    "datasets/sciknoweval/physics/train.json": {
        "sha256": "3c16e829ceb9c580a58b6cb46fe841d5c5d05608f89b738b5c4eadf90cd78bc7",
        "git_blob_sha1": "afc03776fbbbc39ab1f496bc3be9a8e2b001e1f9", "bytes": 1030282},
    "datasets/sciknoweval/physics/test.json": {
        "sha256": "fde88cd10e4192115d550000a8b5b8b714aa8a2651abba499b1f8b8e6f72c1d3",
        "git_blob_sha1": "b1f4875ed5e25f37d30958e7b70a0d1f210f4cf3", "bytes": 116111},
    "datasets/tooluse/train.json": {
        "sha256": None, "git_blob_sha1": "b3f1449172a9a98389c03d38f83ab2795426d7f8", "bytes": None},
    "datasets/tooluse/test.json": {
        "sha256": "947dbf5d93a79448dbf41f00c6701402e5f2c8324936e89ed5623c553675e438",
        "git_blob_sha1": "64ef17062731ece73d034c4a28cebdf2afe061bb", "bytes": 475880},
}


class ReferenceDataError(ValueError):
    """A reference file is missing, corrupted, or does not have the pinned number of rows."""


def sha256_file(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: str | Path) -> str:
    """Git's object id of the file: sha1(b"blob <size>\\0" + content)."""
    content = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def verify_file(path: str | Path, *, sha256: str | None = None, git_blob: str | None = None) -> None:
    """Raise ``ReferenceDataError`` naming ``path`` if it is missing or a given hash does not match."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceDataError(f"{path}: reference file is missing")
    if sha256 is None and git_blob is None:
        raise ValueError(f"{path}: give sha256= or git_blob= to verify against")
    if sha256 is not None and (actual := sha256_file(path)) != sha256.lower():
        raise ReferenceDataError(f"{path}: SHA-256 {actual} does not match the pinned {sha256}")
    if git_blob is not None and (actual := git_blob_sha1(path)) != git_blob.lower():
        raise ReferenceDataError(f"{path}: git blob id {actual} does not match the pinned {git_blob}")


def verify_reference_clone(root: str | Path, files: Mapping[str, Mapping] = REFERENCE_FILES) -> list[Path]:
    """Verify every pinned file under ``root`` (a clone of the reference) and return their paths."""
    root = Path(root)
    checked = []
    for rel_path, pins in files.items():
        verify_file(root / rel_path, sha256=pins.get("sha256"), git_blob=pins.get("git_blob_sha1"))
        checked.append(root / rel_path)
    return checked


def check_split_count(
    path: str | Path,
    domain: str,
    split: str,
    n_rows: int,
    expected: Mapping[tuple[str, str], int] = PINNED_SPLIT_COUNTS,
) -> None:
    """Raise ``ReferenceDataError`` naming ``path`` if ``n_rows`` differs from the pinned count (if one is pinned)."""
    pinned = expected.get((domain, split))
    if pinned is not None and n_rows != pinned:
        raise ReferenceDataError(
            f"{path}: {n_rows} rows loaded for {domain}/{split}, but the reference ({REFERENCE_REPO}@"
            f"{REFERENCE_COMMIT[:7]}) has {pinned}"
        )


def check_split_counts(
    counts: Mapping[tuple[str, str], tuple[str | Path, int]],
    expected: Mapping[tuple[str, str], int] = PINNED_SPLIT_COUNTS,
) -> dict[tuple[str, str], int]:
    """Check ``{(domain, split): (file, rows)}`` against the pinned counts; report every mismatch at once.

    Returns ``{(domain, split): rows}`` for logging. Raises ``ReferenceDataError`` listing each mismatching file.
    """
    problems = []
    for (domain, split), (path, n_rows) in sorted(counts.items()):
        try:
            check_split_count(path, domain, split, n_rows, expected)
        except ReferenceDataError as err:
            problems.append(str(err))
    if problems:
        raise ReferenceDataError("row counts differ from the pinned reference splits:\n  " + "\n  ".join(problems))
    return {key: n for key, (_, n) in counts.items()}


def count_rows(rows: list[dict]) -> dict[tuple[str, str], int]:
    """``{(domain, split): rows}`` of loaded RL rows, read from ``extra_info`` (for ``check_split_counts``)."""
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["extra_info"]["domain"], row["extra_info"]["split"])
        counts[key] = counts.get(key, 0) + 1
    return counts

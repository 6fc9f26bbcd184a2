"""Mutation audit: apply one listed source change at a time, run the tests named for it, restore the file, and
print which changes the tests catch (killed) and which they let through (survived).

Not part of CI: pytest does not collect this folder's files (no ``test_`` prefix), and a full audit takes tens of
minutes. Run it from the repository root:

    .venv/bin/python tests/mutation/audit.py                 # every mutant in tests/mutation/mutants_*.py
    .venv/bin/python tests/mutation/audit.py --only ID ...   # some of them
    .venv/bin/python tests/mutation/audit.py --list          # what would run
    .venv/bin/python tests/mutation/audit.py --first         # stop each run at its first failing test (faster)

A mutant is a dict in a ``MUTANTS`` list of a ``mutants_*.py`` module here: ``id``, ``file``, ``old`` (text that
must occur exactly once in the file), ``new``, ``tests`` (pytest node ids or paths) and ``what`` (the defect it
stands for); ``expect: "survive"`` with a ``why`` marks a change known to be equivalent (no test can catch it).
The named tests are first run once unmutated and must pass. The file is restored after every run, also on
Ctrl-C, and checked byte for byte at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def load_mutants() -> list[dict]:
    mutants = []
    for path in sorted(HERE.glob("mutants_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        mutants.extend(module.MUTANTS)
    ids = [m["id"] for m in mutants]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"duplicate mutant ids: {duplicates}")
    return mutants


def run_tests(tests: list[str], first: bool) -> tuple[int, list[str], float]:
    """(pytest exit code, failing node ids, seconds)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rfE",
               *(["-x"] if first else []), *tests]
    env = dict(os.environ, SCSDPO_SLURM_TESTS="0")
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return -1, ["(timeout)"], time.perf_counter() - start
    failing = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, flags=re.MULTILINE)
    if done.returncode not in (0, 1) and not failing:
        failing = [f"(pytest exit {done.returncode}: {done.stdout.strip().splitlines()[-1:] or done.stderr[-200:]})"]
    return done.returncode, failing, time.perf_counter() - start


def short(node: str) -> str:
    return node.replace("tests/", "").replace(".py::", "::")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="ID")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--first", action="store_true", help="pytest -x: report only the first failing test")
    args = parser.parse_args(argv)
    mutants = load_mutants()
    if args.only:
        unknown = set(args.only) - {m["id"] for m in mutants}
        if unknown:
            raise SystemExit(f"unknown mutant ids: {sorted(unknown)}")
        mutants = [m for m in mutants if m["id"] in args.only]
    originals = {m["file"]: (ROOT / m["file"]).read_bytes() for m in mutants}
    for m in mutants:  # every change must apply cleanly before anything runs
        count = originals[m["file"]].decode().count(m["old"])
        if count != 1:
            raise SystemExit(f"mutant {m['id']}: the text to replace occurs {count} times in {m['file']}")
    if args.list:
        for m in mutants:
            print(f"{m['id']:<28} {m['file']:<40} {m['what']}")
        return 0

    tests = list(dict.fromkeys(t for m in mutants for t in m["tests"]))
    code, failing, seconds = run_tests(tests, first=False)
    if code != 0:
        raise SystemExit(f"the unmutated tests fail ({failing}); fix them before auditing")
    print(f"baseline: {len(tests)} test paths pass unmutated ({seconds:.0f} s)\n", flush=True)

    rows = []
    try:
        for m in mutants:
            path = ROOT / m["file"]
            path.write_bytes(originals[m["file"]].decode().replace(m["old"], m["new"]).encode())
            try:
                code, failing, seconds = run_tests(m["tests"], args.first)
            finally:
                path.write_bytes(originals[m["file"]])
            status = "survived" if code == 0 else "killed"
            expected = m.get("expect", "kill")
            note = "" if (status == "killed") == (expected == "kill") else "  <-- unexpected"
            rows.append((m, status, failing))
            print(f"{m['id']:<28} {status:<8} {seconds:5.0f} s  {', '.join(short(f) for f in failing[:3])}"
                  f"{' ...' if len(failing) > 3 else ''}{note}", flush=True)
    finally:
        for file, content in originals.items():
            (ROOT / file).write_bytes(content)
    for file, content in originals.items():
        assert (ROOT / file).read_bytes() == content, f"{file} was not restored"

    print("\n| mutant | defect | result | failing tests |\n|---|---|---|---|")
    for m, status, failing in rows:
        why = f" (expected: {m['why']})" if status == "survived" and m.get("why") else ""
        print(f"| {m['id']} | {m['what']} | {status}{why} | {', '.join(short(f) for f in failing) or '-'} |")
    killed = sum(status == "killed" for _, status, _ in rows)
    unexpected = [m["id"] for m, status, _ in rows if (status == "killed") != (m.get("expect", "kill") == "kill")]
    print(f"\n{killed} of {len(rows)} killed; unexpected results: {unexpected or 'none'}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())

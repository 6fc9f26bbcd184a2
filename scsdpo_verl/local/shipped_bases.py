"""Base checkpoints that ship with the repository, and when a run may use one instead of building its own.

A tiny model's base (tokenizer + warm start, ``models.make_base``) is a pure function of its recipe: the model,
its ``base_model`` settings and the code that builds it. Building it is half of the default's wall time on a
fast CPU and two thirds on a slow one (20 min per base on a 2-core AMD EPYC), and a different CPU's rounding
builds a different base (README, "Run time"). So the default uses the base shipped under ``bases/<model>/``
when, and only when, the shipped recipe equals the one this checkout would build from:

- ``model``, ``kind`` and every ``base_model`` setting after the schema's defaults (``shipped_dir`` aside);
- ``sources``: a digest of the warm start's code: ``scsdpo_verl/local/models.py`` and every ``scsdpo_verl``
  module it imports, transitively, each read as its syntax tree without comments or docstrings (a comment
  does not change the base; a changed task generator, drill or sampler does).

Anything else builds the base, and the log says which key differs. ``recipe.json`` in a base directory holds
its recipe, where it was made (``made``: commit, CPU, torch, seconds) and the sha256 of each file, checked
before a shipped base is used.

A code change that leaves the base as it was (a refactor, a faster sampler) still changes ``sources``, so the
bases are rebuilt to prove it. When the rebuild is the shipped base bit for bit (every file, the base report
aside from its build seconds), ``ship_base`` keeps the shipped files and their ``made``, takes the new recipe
and adds the rebuild to ``rebuilt``: the reference results, which name the commit a base was made at, stay valid.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # scsdpo_verl/
RECIPE_FILE = "recipe.json"
# written into a base directory by the workflow, never part of a base
NOT_SHIPPED = {RECIPE_FILE, ".snakemake_timestamp"}
WARM_START_MODULE = "scsdpo_verl.local.models"


class ShippedBaseProblem(RuntimeError):
    """A shipped base that matches its recipe but whose files are not the ones recorded (corrupt, an LFS pointer)."""


def _module_file(module: str) -> Path | None:
    """The file of a ``scsdpo_verl`` module (``pkg/__init__.py`` for a package), or None if there is none."""
    parts = module.split(".")
    if parts[0] != PACKAGE_ROOT.name:
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """Every ``scsdpo_verl`` module that ``path`` (module ``module``) imports, at any depth of its code.

    ``from a.b import c`` counts ``a.b`` and ``a.b.c`` if that is a module, not the packages above ``a.b``:
    Python runs their ``__init__`` too, but a base depends on what its code calls, and counting
    ``scsdpo_verl/__init__`` would tie the shipped bases to every module it re-exports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y, from .. import z
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # a name may be a submodule
    return {name for name in found if _module_file(name) is not None}


def warm_start_sources(root: str = WARM_START_MODULE) -> dict[str, Path]:
    """module name -> file, for ``root`` and every ``scsdpo_verl`` module it imports, transitively."""
    sources: dict[str, Path] = {}
    pending = [root]
    while pending:
        module = pending.pop()
        if module in sources:
            continue
        path = _module_file(module)
        if path is None:
            raise FileNotFoundError(f"no source file for module {module}")
        sources[module] = path
        pending.extend(_imported_modules(path, module) - sources.keys())
    return dict(sorted(sources.items()))


def code_digest_text(source: str) -> str:
    """``source``'s syntax tree without docstrings, as text: comments and layout do not appear in it."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def sources_digest(sources: Mapping[str, Path] | None = None) -> str:
    """sha256 over (module name, ``code_digest_text``) of the warm start's sources."""
    sources = warm_start_sources() if sources is None else sources
    digest = hashlib.sha256()
    for module, path in sorted(sources.items()):
        digest.update(module.encode() + b"\0" + code_digest_text(path.read_text()).encode() + b"\0")
    return digest.hexdigest()


def base_recipe(spec: Mapping[str, Any], settings: Mapping[str, Any], digest: str | None = None) -> dict[str, Any]:
    """What a base checkpoint is a function of: the model (``spec``: kind and name), its ``base_model``
    settings after the schema's defaults (``shipped_dir`` is where to look, not part of the recipe) and the
    warm start's code."""
    return {"model": spec.get("name"), "kind": spec["kind"],
            "settings": {key: settings[key] for key in sorted(settings) if key != "shipped_dir"},
            "sources": sources_digest() if digest is None else digest}


def recipe_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """One line per key where the two recipes differ (``settings`` key by key), empty when they are equal."""
    lines = []
    for key in ("model", "kind"):
        if ours.get(key) != theirs.get(key):
            lines.append(f"{key}: {ours.get(key)!r} here, {theirs.get(key)!r} shipped")
    mine, shipped = ours.get("settings", {}), theirs.get("settings", {})
    for key in sorted(set(mine) | set(shipped)):
        if mine.get(key, "<unset>") != shipped.get(key, "<unset>"):
            lines.append(f"base_model.{key}: {mine.get(key, '<unset>')!r} here, {shipped.get(key, '<unset>')!r} "
                         "shipped")
    if ours.get("sources") != theirs.get("sources"):
        lines.append("the warm start's code (scsdpo_verl.local.models and its imports) differs from the code the "
                     "shipped base was built with")
    return lines


def file_digests(directory: str | Path) -> dict[str, str]:
    """sha256 of each file of a base directory (``NOT_SHIPPED`` aside), by name."""
    directory = Path(directory)
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.iterdir()) if path.is_file() and path.name not in NOT_SHIPPED}


def this_commit(repo: str | Path = PACKAGE_ROOT.parent) -> str:
    """The checkout's commit, with ``-dirty`` when its tracked files differ from it; ``unknown`` outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def write_recipe(base_dir: str | Path, recipe: Mapping[str, Any], made: Mapping[str, Any]) -> Path:
    """``recipe.json`` for a freshly built base: its recipe, where it was made and its files' sha256."""
    path = Path(base_dir) / RECIPE_FILE
    path.write_text(json.dumps({**recipe, "made": dict(made), "files": file_digests(base_dir)}, indent=2) + "\n")
    return path


def find_shipped_base(shipped_dir: str | Path | None, model: str,
                      recipe: Mapping[str, Any]) -> tuple[Path | None, str]:
    """(the shipped base of ``model`` to use, or None; why, in one line for the log).

    A shipped base whose recipe matches but whose files do not match their recorded sha256 raises
    ``ShippedBaseProblem``: the checkout is damaged, and building a different base would hide it."""
    if shipped_dir is None:
        return None, "base_model.shipped_dir is null: building the base"
    base = Path(shipped_dir) / model
    if not (base / RECIPE_FILE).is_file():
        return None, f"no shipped base for {model} ({base / RECIPE_FILE} not found): building it"
    shipped = json.loads((base / RECIPE_FILE).read_text())
    differences = recipe_differences(recipe, shipped)
    if differences:
        return None, (f"the shipped base {base} was made from another recipe ({'; '.join(differences)}): "
                      "building the base instead")
    recorded, found = shipped.get("files", {}), file_digests(base)
    if recorded != found:
        bad = sorted(name for name in set(recorded) | set(found) if recorded.get(name) != found.get(name))
        raise ShippedBaseProblem(f"{base}: {', '.join(bad)} do not match the sha256 in {base / RECIPE_FILE} (a "
                                 "damaged checkout, or git LFS pointers?); restore them, or set "
                                 "base_model.shipped_dir: null to build the base")
    made = shipped.get("made", {})
    return base, (f"using the shipped base {base}: same recipe, made at commit {made.get('commit', '?')} on "
                  f"{made.get('cpu', '?')} in {made.get('seconds', '?')} s (base_model.shipped_dir: null builds it)")


def copy_base(source: str | Path, destination: str | Path) -> None:
    """A base directory's files (``recipe.json`` included, the workflow's markers not) into ``destination``."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(source).iterdir()):
        if path.is_file() and path.name != ".snakemake_timestamp":
            shutil.copyfile(path, destination / path.name)


BUILD_TIME_KEY = "seconds"  # the one entry of base_report.json a rebuild may change


def same_base(built: str | Path, shipped: str | Path) -> bool:
    """Whether two base directories hold the same base: the same files, each the same bytes, except
    ``base_report.json``, which may differ in its build seconds only (``recipe.json`` is not compared)."""
    built, shipped = Path(built), Path(shipped)
    mine, theirs = file_digests(built), file_digests(shipped)  # recipe.json aside
    if set(mine) != set(theirs) or "base_report.json" not in mine:
        return False
    if any(mine[name] != theirs[name] for name in mine if name != "base_report.json"):
        return False
    reports = [json.loads((directory / "base_report.json").read_text()) for directory in (built, shipped)]
    for report in reports:
        report.pop(BUILD_TIME_KEY, None)
    return reports[0] == reports[1]


def ship_base(built: str | Path, shipped_dir: str | Path, model: str) -> Path:
    """Copy a base the workflow built (``results/models/<model>/base``) to ``shipped_dir/<model>``, after
    checking that it was built by this checkout's warm-start code and that its files are the recorded ones.

    When the shipped base is this one bit for bit (``same_base``), its files and ``made`` stay; its recipe
    becomes the new one, and ``rebuilt`` lists where and from which code each such rebuild was made."""
    built = Path(built)
    if not (built / RECIPE_FILE).is_file():
        raise FileNotFoundError(f"{built / RECIPE_FILE} not found: only a base built by the workflow's base_model "
                                "rule (which records its recipe) can be shipped")
    recipe = json.loads((built / RECIPE_FILE).read_text())
    if recipe.get("sources") != sources_digest():
        raise ValueError(f"{built} was built from other warm-start code than this checkout's; rebuild it")
    if recipe.get("files") != file_digests(built):
        raise ValueError(f"{built}: its files do not match the sha256 in {RECIPE_FILE}")
    if "-dirty" in str(recipe.get("made", {}).get("commit", "")):
        logger.warning("%s was built from a checkout with uncommitted changes", built)
    target = Path(shipped_dir) / model
    if (target / RECIPE_FILE).is_file() and same_base(built, target):
        shipped = json.loads((target / RECIPE_FILE).read_text())
        rebuild = {**recipe.get("made", {}), "sources": recipe.get("sources")}
        updated = {**shipped, **{key: recipe[key] for key in ("model", "kind", "settings", "sources")},
                   "rebuilt": [*shipped.get("rebuilt", []), rebuild]}
        (target / RECIPE_FILE).write_text(json.dumps(updated, indent=2) + "\n")
        logger.info("%s is the shipped base %s bit for bit: kept it, recipe updated", built, target)
        return target
    if target.exists():
        shutil.rmtree(target)
    copy_base(built, target)
    return target


def provide_base(spec: Mapping[str, Any], settings: Mapping[str, Any], out_dir: str | Path, *,
                 shipped_dir: str | Path | None, threads: int = 1,
                 checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
    """The base_model rule: copy the shipped base of ``spec`` if its recipe is this one (``find_shipped_base``),
    else build it with ``models.make_base`` and record its recipe. Returns the base report, which says which
    (``base``: "shipped ..." or "built ..."); the choice and its reason are logged."""
    from scsdpo_verl.analysis.expected import this_machine
    from scsdpo_verl.local.models import make_base

    out_dir = Path(out_dir)
    recipe = base_recipe(spec, settings)
    shipped, why = find_shipped_base(shipped_dir, spec["name"], recipe)
    logger.info("base %s: %s", spec["name"], why)
    if shipped is not None:
        copy_base(shipped, out_dir)
        made = json.loads((out_dir / RECIPE_FILE).read_text()).get("made", {})
        report = json.loads((out_dir / "base_report.json").read_text())
        report["base"] = (f"shipped ({Path(shipped_dir).name}/{shipped.name}, built at commit "
                          f"{str(made.get('commit', '?'))[:10]} on {made.get('cpu', '?')})")
        (out_dir / "base_report.json").write_text(json.dumps(report, indent=2))
        return report
    report = make_base(spec["name"], out_dir, sft_steps=settings["warm_start_steps"],
                       sft_batch=settings["warm_start_batch"], sft_lr=settings["warm_start_lr"],
                       teacher_fraction=settings["teacher_fraction"], copy_drill_steps=settings["copy_drill_steps"],
                       teacher_first_steps=settings["teacher_first_steps"],
                       copy_target_loss=settings["copy_target_loss"],
                       max_extra_drill_steps=settings["max_extra_drill_steps"], bf16=settings["bf16"],
                       number_tokens=settings["number_tokens"], eval_questions=settings["report_questions"],
                       seed=settings["seed"], threads=threads, checkpoint_dir=checkpoint_dir)
    machine = this_machine()
    report["base"] = "built by this run"
    (out_dir / "base_report.json").write_text(json.dumps(report, indent=2))
    write_recipe(out_dir, recipe, {"commit": this_commit(), "cpu": machine["cpu"],
                                   "cpu_capability": machine["cpu_capability"], "torch": machine["torch"],
                                   "threads": threads, "seconds": report.get("seconds")})
    return report

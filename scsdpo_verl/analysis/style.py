"""One look for every figure: Okabe-Ito colours (colour-blind safe), a marker and line style per method.

Figures are drawn inside ``figure_style()`` (an rc context, so importing this module changes nothing global)
and saved with ``save_figure`` as PNG and PDF.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

# Okabe & Ito (2008), "Color Universal Design"
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "grey": "#7F7F7F",
}
SEQUENTIAL_CMAP = "cividis"  # perceptually uniform and colour-blind safe, for heat maps and ordered bins


@dataclass(frozen=True)
class MethodStyle:
    label: str
    color: str
    marker: str
    linestyle: str


METHOD_STYLES: dict[str, MethodStyle] = {
    "base": MethodStyle("Base", OKABE_ITO["grey"], "s", ":"),
    "grpo": MethodStyle("GRPO", OKABE_ITO["green"], "^", "-."),
    "grpo_std": MethodStyle("GRPO (std-norm.)", OKABE_ITO["purple"], "v", ":"),
    "sdpo": MethodStyle("SDPO", OKABE_ITO["blue"], "o", "--"),
    "sc_sdpo": MethodStyle("SC-SDPO", OKABE_ITO["vermillion"], "D", "-"),
}
_EXTRA_COLORS = [OKABE_ITO[c] for c in ("orange", "sky_blue", "black", "purple")]  # yellow is too faint on white
_EXTRA_MARKERS = ["P", "X", "*", "h"]
METHOD_ORDER = ("base", "grpo", "grpo_std", "sdpo", "sc_sdpo")
SERIES_COLORS = [OKABE_ITO[c] for c in ("blue", "vermillion", "green", "orange", "sky_blue", "purple", "black")]


def method_style(method: str, label: str | None = None) -> MethodStyle:
    """The style of a method; unknown methods (ablation variants) get the remaining Okabe-Ito colours."""
    if method in METHOD_STYLES:
        style = METHOD_STYLES[method]
        return MethodStyle(label or style.label, style.color, style.marker, style.linestyle)
    slot = sum(map(ord, method)) % len(_EXTRA_COLORS)  # stable across runs and figures
    return MethodStyle(label or method, _EXTRA_COLORS[slot], _EXTRA_MARKERS[slot], "-")


def sort_methods(methods) -> list[str]:
    """Known methods in the canonical order, then the others alphabetically."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(dict.fromkeys(methods), key=lambda m: (rank.get(m, len(rank)), m))


def styles_for(methods: Iterable[tuple[str, str, str | None, bool]]) -> dict[str, MethodStyle]:
    """Styles of (method key, algorithm, label, is ablation variant) tuples, keyed by method.

    Method keys are free labels: the main grid's method of each algorithm gets that algorithm's style (so a
    method named ``scsdpo`` with algorithm sc_sdpo is drawn as SC-SDPO); ablation variants and any further
    method of an algorithm get the remaining colours.
    """
    styles: dict[str, MethodStyle] = {}
    taken: set[str] = set()
    for method, algorithm, label, ablation in sorted(set(methods), key=lambda t: (t[3], t[0])):
        if method in styles:
            continue
        if not ablation and algorithm in METHOD_STYLES and algorithm not in taken:
            taken.add(algorithm)
            styles[method] = method_style(algorithm, label)
        else:
            styles[method] = method_style(method if method not in METHOD_STYLES else f"{method}*", label or method)
    return styles


RC_PARAMS = {
    "figure.dpi": 100, "savefig.dpi": 200, "savefig.bbox": "tight",
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "lines.linewidth": 1.5, "lines.markersize": 4, "legend.frameon": False,
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
}


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    with plt.rc_context(RC_PARAMS):
        yield


def panel_grid(rows: int, cols: int, *, width: float = 3.2, height: float = 2.4, **kwargs):
    """A rows x cols grid of axes (always a 2-D array) in the shared style."""
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             layout="constrained", **kwargs)
    return fig, axes


def save_figure(fig: Figure, out_prefix: str | Path) -> tuple[Path, Path]:
    """Write ``<prefix>.png`` and ``<prefix>.pdf``; returns both paths."""
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = out_prefix.with_suffix(".png"), out_prefix.with_suffix(".pdf")
    with figure_style():
        fig.savefig(png)
        fig.savefig(pdf)
    return png, pdf

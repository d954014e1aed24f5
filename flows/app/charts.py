"""Charts for reports where a picture says more (``scrm report NAME --chart FILE.png``).

A report names its chart in its header (``-- chart: KIND``); the kinds:

* ``bar`` — the first text column on the x axis, the first numeric column as bars
  (funnel steps, journey arms); with a ``split`` column of more than one value, grouped
  bars, one colour per split;
* ``heatmap`` — retention: cohorts down, weeks across, the share as colour and label;
* ``calibration`` — predicted against observed per decile, with the diagonal;
* ``line`` — a numeric column over time, one line per value of the first column (models).

Images are PNG, 1000 × 600 pixels, drawn with matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

WIDTH, HEIGHT, DPI = 1000, 600, 100
KINDS = ("bar", "heatmap", "calibration", "line")


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _label(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 else f"{v:.3g}"


def _bars(ax: Any, names: list[str], rows: list[tuple[Any, ...]]) -> None:
    split_i = names.index("split") if "split" in names else -1
    label_i = next((i for i, v in enumerate(rows[0]) if isinstance(v, str) and i != split_i), 0)
    value_i = next(i for i, v in enumerate(rows[0]) if _num(v) and i != label_i and names[i] != "step")
    splits = list(dict.fromkeys(str(r[split_i]) for r in rows)) if split_i >= 0 else [""]
    if len(splits) == 1:
        values = [float(r[value_i]) for r in rows]
        bars = ax.bar(range(len(rows)), values, color="#4472c4")
        ax.set_xticks(range(len(rows)), [str(r[label_i]) for r in rows], rotation=20, ha="right")
        ax.bar_label(bars, labels=[_label(v) for v in values])
    else:
        labels = list(dict.fromkeys(str(r[label_i]) for r in rows))
        value = {(str(r[split_i]), str(r[label_i])): float(r[value_i]) for r in rows}
        width = 0.8 / len(splits)
        for k, split in enumerate(splits):
            xs = [i - 0.4 + (k + 0.5) * width for i in range(len(labels))]
            values = [value.get((split, lab), 0.0) for lab in labels]
            bars = ax.bar(xs, values, width, label=split or "(none)")
            if len(splits) <= 6:
                ax.bar_label(bars, labels=[_label(v) for v in values], fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.legend(title=names[split_i])
    ax.set_ylabel(names[value_i])


def render(kind: str, title: str, names: list[str], rows: list[tuple[Any, ...]], path: Path) -> Path:
    """Draw `rows` as a `kind` chart into `path` (PNG)."""
    if kind not in KINDS:
        raise ValueError(f"chart kind {kind!r} is not one of {', '.join(KINDS)}")
    fig, ax = plt.subplots(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    try:
        if not rows:
            ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
        elif kind == "bar":
            _bars(ax, names, rows)
        elif kind == "heatmap":
            cohorts = sorted({r[0] for r in rows})
            weeks = sorted({int(r[1]) for r in rows})
            grid = [[float("nan")] * len(weeks) for _ in cohorts]
            for r in rows:
                grid[cohorts.index(r[0])][weeks.index(int(r[1]))] = float(r[-1])
            im = ax.imshow(grid, cmap="Blues", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(weeks)), [f"w{w}" for w in weeks])
            ax.set_yticks(range(len(cohorts)), [str(c) for c in cohorts])
            for i, row in enumerate(grid):
                for j, v in enumerate(row):
                    if v == v:
                        ax.text(
                            j, i, f"{v:.0%}", ha="center", va="center", color="white" if v > 0.6 else "black"
                        )
            fig.colorbar(im, ax=ax, label="share of cohort")
        elif kind == "calibration":
            pred = [float(r[names.index("predicted")]) for r in rows]
            obs = [float(r[names.index("observed")]) for r in rows]
            ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
            ax.plot(pred, obs, "o-", color="#4472c4", label="model")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("mean predicted probability")
            ax.set_ylabel("observed share")
            ax.legend()
        else:  # line
            at_i = next(i for i, n in enumerate(names) if n in ("at", "ts", "day"))
            value_i = next(
                i for i, v in enumerate(rows[0]) if _num(v) and names[i] not in ("version", "learned")
            )
            series: dict[str, list[tuple[Any, float]]] = defaultdict(list)
            for r in rows:
                series[str(r[0])].append((r[at_i], float(r[value_i])))
            for name, pts in series.items():
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
            ax.set_ylabel(names[value_i])
            ax.legend()
        ax.set_title(textwrap.fill(title, 110), fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path

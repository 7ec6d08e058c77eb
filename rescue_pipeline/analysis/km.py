"""Kaplan-Meier estimate of a time-to-event parameter from analysis.adtte: the analysts' first look.

For analysts only: it shows efficacy by arm, so it is never written into the sponsors'
data-quality report. It reads ADTTE (AVAL in days, CNSR 0 = event) exactly as exported, so its
numbers can be checked against the rows. The estimate is statsmodels' `SurvfuncRight` (a
well-kept library a statistician can check our numbers against; lifelines 0.30 requires
pandas < 3):
- S(t) = prod over event times t_j <= t of (1 - d_j / n_j), n_j = subjects with AVAL >= t_j,
  with its Greenwood standard error.
- Median = the smallest event time with S(t) < 0.5, strictly, as statsmodels and SAS (none if
  the curve never falls below 0.5), and its
  95% CI by the library's complementary log-log method (an end that is not estimable is none).
- 95% CI of S(t) at each event time: the log(-log) transform of the library's Greenwood error.
- Number at risk at month m: subjects with AVAL >= m x 30.4375 days (the ADaM month).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

MONTH_DAYS = 30.4375
AT_RISK_MONTHS = (0, 6, 12, 18, 24)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class KmCurve:
    """The estimate at each distinct event time (censor-only times do not move the curve)."""

    times: tuple[int, ...]
    n_at_risk: tuple[int, ...]
    events: tuple[int, ...]
    survival: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]


@dataclass(frozen=True)
class KmGroup:
    name: str
    n: int
    events: int
    median_days: float | None
    median_lower_days: float | None
    median_upper_days: float | None
    at_risk: dict[int, int]  # month -> number at risk
    curve: KmCurve
    aval: tuple[int, ...] = ()
    cnsr: tuple[int, ...] = ()


@dataclass
class KmResult:
    paramcd: str
    groups: list[KmGroup] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # png, csv, md, curve


def _survfunc(aval: Sequence[int], cnsr: Sequence[int]) -> Any:
    from statsmodels.duration.survfunc import SurvfuncRight  # 1 s to import: rescue km only

    return SurvfuncRight(np.asarray(aval, dtype=float), (np.asarray(cnsr) == 0).astype(int))


def estimate(aval: Sequence[int], cnsr: Sequence[int]) -> KmCurve:
    """Product-limit estimate with log(-log) 95% bands, at each event time."""
    sf = _survfunc(aval, cnsr)
    survival = np.asarray(sf.surv_prob, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.asarray(sf.surv_prob_se, dtype=float) / (survival * np.abs(np.log(survival)))
        lower = survival ** np.exp(Z95 * se)
        upper = survival ** np.exp(-Z95 * se)
    lower = np.where(survival > 0, np.nan_to_num(lower, nan=0.0), 0.0)
    upper = np.where(survival > 0, np.nan_to_num(upper, nan=1.0), 0.0)
    return KmCurve(
        tuple(int(x) for x in sf.surv_times), tuple(int(x) for x in sf.n_risk),
        tuple(int(x) for x in sf.n_events), tuple(float(x) for x in survival),
        tuple(float(x) for x in lower), tuple(float(x) for x in upper),
    )  # fmt: skip


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def median(aval: Sequence[int], cnsr: Sequence[int]) -> tuple[float | None, ...]:
    """The median and its 95% CI (statsmodels: quantile, quantile_ci with cloglog)."""
    if not any(c == 0 for c in cnsr):
        return (None, None, None)
    sf = _survfunc(aval, cnsr)
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = sf.quantile_ci(0.5, alpha=0.05, method="cloglog")
    return (_finite(sf.quantile(0.5)), _finite(low), _finite(high))


def group(name: str, aval: Sequence[int], cnsr: Sequence[int]) -> KmGroup:
    curve = estimate(aval, cnsr)
    middle, low, high = median(aval, cnsr)
    return KmGroup(
        name=name,
        n=len(aval),
        events=sum(1 for c in cnsr if c == 0),
        median_days=middle,
        median_lower_days=low,
        median_upper_days=high,
        at_risk={m: sum(1 for a in aval if a >= m * MONTH_DAYS) for m in AT_RISK_MONTHS},
        curve=curve,
        aval=tuple(aval),
        cnsr=tuple(cnsr),
    )


def kaplan_meier(con: duckdb.DuckDBPyConnection, *, out: Path, paramcd: str = "PFS") -> KmResult:
    """Overall and by-arm estimate of `paramcd`; writes km_<param>.png/.csv/.md and the curve."""
    rows = con.execute(
        "SELECT t.AVAL, t.CNSR, s.ARMCD, s.ARM FROM analysis.adtte t "
        "LEFT JOIN analysis.adsl s USING (USUBJID) WHERE t.PARAMCD = $p ORDER BY t.USUBJID",
        {"p": paramcd},
    ).fetchall()
    if not rows:
        raise ValueError(f"analysis.adtte has no rows with PARAMCD = {paramcd!r}")
    result = KmResult(paramcd=paramcd)
    result.groups.append(group("Overall", [r[0] for r in rows], [r[1] for r in rows]))
    arms = sorted({(r[2], r[3]) for r in rows}, key=lambda a: (a[0] is None, a[0] or ""))
    for arm, text in arms:
        name = f"Arm {arm}: {text}" if arm and text else f"Arm {arm}" if arm else "No arm"
        picked = [r for r in rows if r[2] == arm]
        result.groups.append(group(name, [r[0] for r in picked], [r[1] for r in picked]))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"km_{paramcd.lower()}"
    result.files = {
        "csv": out / f"{stem}.csv", "md": out / f"{stem}.md",
        "curve": out / f"{stem}_curve.csv", "png": out / f"{stem}.png",
    }  # fmt: skip
    result.files["csv"].write_text(summary_csv(result.groups))
    result.files["md"].write_text(summary_markdown(paramcd, result.groups))
    result.files["curve"].write_text(curve_csv(result.groups))
    plot(paramcd, result.groups, result.files["png"])
    return result


def _num(x: float | None, scale: float = 1.0) -> str:
    return "" if x is None else f"{x / scale:.1f}" if scale != 1.0 else f"{x:g}"


def summary_csv(groups: Sequence[KmGroup]) -> str:
    head = ["group", "n", "events", "censored", "median_days", "median_lcl_days",
            "median_ucl_days", "median_months", "median_lcl_months", "median_ucl_months",
            *(f"at_risk_{m}m" for m in AT_RISK_MONTHS)]  # fmt: skip
    lines = [",".join(head)]
    for g in groups:
        medians = (g.median_days, g.median_lower_days, g.median_upper_days)
        cells = [
            '"' + g.name.replace('"', '""') + '"', str(g.n), str(g.events), str(g.n - g.events),
            *(_num(x) for x in medians), *(_num(x, MONTH_DAYS) for x in medians),
            *(str(g.at_risk[m]) for m in AT_RISK_MONTHS),
        ]  # fmt: skip
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def summary_markdown(paramcd: str, groups: Sequence[KmGroup]) -> str:
    months = " | ".join(f"{m} mo" for m in AT_RISK_MONTHS)
    lines = [
        f"# Kaplan-Meier estimate: {paramcd} (analysts only, not for the sponsors' report)",
        "",
        f"| Group | N | Events | Median, months (95% CI) | At risk: {months} |",
        "|---|---:|---:|---|" + "---:|" * len(AT_RISK_MONTHS),
    ]
    for g in groups:
        median = "not reached" if g.median_days is None else _num(g.median_days, MONTH_DAYS)
        ci = f"({_num(g.median_lower_days, MONTH_DAYS) or 'NE'}, " \
             f"{_num(g.median_upper_days, MONTH_DAYS) or 'NE'})"  # fmt: skip
        risk = " | ".join(str(g.at_risk[m]) for m in AT_RISK_MONTHS)
        lines.append(f"| {g.name} | {g.n} | {g.events} | {median} {ci} | {risk} |")
    lines += ["", f"Month = {MONTH_DAYS} days. Estimates by statsmodels' SurvfuncRight: "
              "median = first time S(t) < 0.5, its CI by the complementary log-log method; "
              "NE = not estimable.", ""]  # fmt: skip
    return "\n".join(lines)


def curve_csv(groups: Sequence[KmGroup]) -> str:
    lines = ["group,time_days,n_at_risk,events,survival,lcl,ucl"]
    for g in groups:
        c = g.curve
        for row in zip(c.times, c.n_at_risk, c.events, c.survival, c.lower, c.upper, strict=True):
            name = '"' + g.name.replace('"', '""') + '"'
            lines.append(",".join([name, *(f"{x:.6g}" for x in row)]))
    return "\n".join(lines) + "\n"


def plot(paramcd: str, groups: Sequence[KmGroup], path: Path) -> None:
    """Step curves with censoring marks and the numbers at risk; Agg canvas, no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.32, 0.85, 0.6))
    for g in groups:
        xs = [0.0, *(t / MONTH_DAYS for t in g.curve.times), max(g.aval) / MONTH_DAYS]
        ys = [1.0, *g.curve.survival, g.curve.survival[-1] if g.curve.survival else 1.0]
        style = "--" if g.name == "Overall" else "-"
        (line,) = ax.step(xs, ys, where="post", linestyle=style, label=f"{g.name} (n={g.n})")
        censored = [a for a, c in zip(g.aval, g.cnsr, strict=True) if c != 0]
        ax.plot([a / MONTH_DAYS for a in censored], [_s_at(g.curve, a) for a in censored],
                "+", color=line.get_color())  # fmt: skip
    ax.set(xlim=(0, max(AT_RISK_MONTHS)), ylim=(0, 1.02), xlabel="Months since randomisation",
           ylabel="Probability", xticks=list(AT_RISK_MONTHS),
           title=f"Kaplan-Meier estimate of {paramcd} (analysts only)")  # fmt: skip
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.3)
    fig.text(0.02, 0.2, "Number at risk", fontsize=8, weight="bold")
    for i, g in enumerate(groups):
        y = 0.16 - i * 0.035
        fig.text(0.02, y, g.name.split(":")[0], fontsize=7)  # full names are in the legend
        for m in AT_RISK_MONTHS:
            fig.text(0.1 + 0.85 * m / max(AT_RISK_MONTHS), y, str(g.at_risk[m]), fontsize=7,
                     ha="center")  # fmt: skip
    fig.savefig(path, dpi=100, metadata={"Software": None})


def _s_at(curve: KmCurve, day: float) -> float:
    s = 1.0
    for time, value in zip(curve.times, curve.survival, strict=True):
        if time > day:
            break
        s = value
    return s if not math.isnan(s) else 0.0

"""The report of an enabled run: Markdown, JSON and a PNG chart.

Written by bench/conftest.py at the end of ``nox -s bench`` into
bench/results/latest.{md,json,png}; ``python bench/_report.py
bench/results/latest.json`` draws the Markdown and the chart again from the
JSON.  The chart needs matplotlib, which only
the bench session installs; without it the chart is skipped with a note.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _compare import Result, Scenario, SideResult, Target, fmt_seconds, fmt_value


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


def machine() -> dict[str, Any]:
    """What the figures came from."""
    import pidproc

    cpu = "?"
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION") or "?"
    except (ValueError, OSError):
        glibc = "?"
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    usable = pidproc.backends()
    return {
        "kernel": platform.release(),
        "glibc": glibc.replace("glibc ", ""),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "pidproc": getattr(pidproc, "__version__", "?"),
        "spawn_path": usable[0] if usable else "?",
        "thp": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "loadavg": os.getloadavg(),
        "commit": commit or "?",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _side_stats(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def markdown(results: list[Result], info: dict[str, Any], command: str, elapsed: float) -> str:
    out = ["# pidproc against the stdlib: benchmark report", ""]
    load0, load1 = info["loadavg_start"], info["loadavg"]
    out += [
        f"Command: `{command}` ({elapsed / 60:.1f} min, {info['date']}, commit {info['commit']})",
        "",
        f"Machine: Linux {info['kernel']}, glibc {info['glibc']}, {info['cpu_count']} CPUs "
        f"({info['cpu']}), {info['python']}, pidproc {info['pidproc']} spawning through "
        f"`{info['spawn_path']}`; load average {load0[0]:.2f} at the start, "
        f"{load1[0]:.2f} at the end (a shared machine).",
        "",
        "How to read: each scenario ran pidproc and what it is compared with in one "
        "process, interleaved round by round (A B A B ...).  *speed-up* = the other "
        "side's time / pidproc's (above 1: pidproc is faster), computed per round and "
        "summarised by the median over rounds with a distribution-free 95 % interval.  "
        "A target is *met* when the median meets it, *within noise* when only the "
        "interval reaches it.",
        "",
        "## Summary",
        "",
        "| | scenario | target | measured | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        verdicts = r.verdicts()
        if not verdicts:
            others = ", ".join(
                f"{s.name}: {r.speedup(s.name).point:.2f}x" for s in r.sides[1:] if s.rounds
            )
            out.append(
                f"| {r.scenario.key} | {r.scenario.title} | (none set) | speed-up {others} | - |"
            )
        for v in verdicts:
            mark = {"met": "met", "within noise": "within noise", "missed": "**MISSED**"}.get(
                v.status, v.status
            )
            out.append(
                f"| {r.scenario.key} | {r.scenario.title} | {v.target.describe()} "
                f"| {v.text} | {mark} |"
            )
    for r in results:
        sc = r.scenario
        out += [
            "",
            f"## {sc.key}: {sc.title}",
            "",
            f"One sample: {sc.measures}.  {sc.rounds} rounds x {sc.per_round} per side, "
            f"{r.elapsed:.0f} s; {sc.stat} compared.",
            "",
            f"| side | median | mean | min .. max | samples | {_ratio_name(sc)} ({sc.stat}) |",
            "|---|---|---|---|---|---|",
        ]
        for i, s in enumerate(r.sides):
            st = _side_stats(s.samples)
            if i == 0:
                ratio = "-"
            else:
                iv = r.speedup(s.name)
                ratio = f"**{iv.point:.2f}x** ({iv.low:.2f} .. {iv.high:.2f})"
            out.append(
                f"| {s.name} | {fmt_value(st['median'], sc.unit)} "
                f"| {fmt_value(st['mean'], sc.unit)} | {fmt_value(st['min'], sc.unit)} .. "
                f"{fmt_value(st['max'], sc.unit)} | {st['n']} | {ratio} |"
            )
        out.append("")
        for v in r.verdicts():
            out.append(f"- target: {v.target.describe()}: {v.text}: **{v.status}**")
        names = {s.name for s in r.sides}
        for a, b in sc.context:
            if a in names and b in names:
                iv = r.paired(b, a)
                out.append(
                    f"- context: {a}'s time / {b}'s = {iv.point:.3f} "
                    f"(95 % CI {iv.low:.3f} .. {iv.high:.3f}), paired per round"
                )
        extras = sorted({k for s in r.sides for e in s.extra for k in e})
        for key in extras:
            per_side = []
            for s in r.sides:
                vals = [e[key] for e in s.extra if key in e]
                if vals:
                    per_side.append(f"{s.name} {fmt_seconds(statistics.median(vals))}")
            out.append(f"- {key} (median per round): " + "; ".join(per_side))
        if sc.note:
            out.append(f"- note: {sc.note}")
    out.append("")
    return "\n".join(out)


def _ratio_name(sc: Scenario) -> str:
    return "speed-up of pidproc" if sc.unit == "s" else "other side / pidproc"


def to_json(
    results: list[Result], info: dict[str, Any], command: str, elapsed: float
) -> dict[str, Any]:
    scenarios = []
    for r in results:
        sc = r.scenario
        scenarios.append(
            {
                "key": sc.key,
                "title": sc.title,
                "measures": sc.measures,
                "stat": sc.stat,
                "rounds": sc.rounds,
                "per_round": sc.per_round,
                "elapsed_s": r.elapsed,
                "note": sc.note,
                "context": [list(pair) for pair in sc.context],
                "unit": sc.unit,
                "sides": [
                    {
                        "name": s.name,
                        **_side_stats(s.samples),
                        # Seconds (or the unit), to the nanosecond (the clocks' resolution).
                        "rounds": [[round(x, 9) for x in r] for r in s.rounds],
                        "extra": s.extra,
                    }
                    for s in r.sides
                ],
                "speedup": {s.name: vars(r.speedup(s.name)) for s in r.sides[1:] if s.rounds},
                "targets": [
                    {
                        "target": v.target.describe(),
                        "kind": v.target.kind,
                        "quantity": v.target.quantity,
                        "value": v.target.value,
                        "other": v.target.other,
                        "status": v.status,
                        "measured": v.text,
                    }
                    for v in r.verdicts()
                ],
            }
        )
    return {"command": command, "elapsed_s": elapsed, "machine": info, "scenarios": scenarios}


def chart(results: list[Result], path: Path, info: dict[str, Any]) -> str | None:
    """Box plots of every side's samples, one panel per scenario.  Returns
    why no chart was drawn, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (nox -s bench installs it)"
    cols = 2
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.6 * rows + 0.8), squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.axis("off")
    for ax, r in zip(axes.flat, results, strict=False):
        names = [s.name for s in r.sides][::-1]
        unit = r.scenario.unit
        scale, shown = (1e3, "ms") if unit == "s" else (1.0, unit)
        data = [[x * scale for x in s.samples] for s in r.sides][::-1]
        try:  # matplotlib 3.10+ says orientation=, and deprecates vert=
            ax.boxplot(data, orientation="horizontal", whis=(5, 95), showfliers=False, widths=0.6)
        except TypeError:
            ax.boxplot(data, vert=False, whis=(5, 95), showfliers=False, widths=0.6)
        ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
        # Log scale when the boxes (not the outliers) span a wide range.
        lo = min(statistics.quantiles(d, n=20)[0] if len(d) > 1 else d[0] for d in data)
        hi = max(statistics.quantiles(d, n=20)[-1] if len(d) > 1 else d[0] for d in data)
        if lo > 0 and hi / lo > 30:
            ax.set_xscale("log")
        ax.set_xlabel(f"{shown} (box: quartiles, whiskers: 5th..95th percentile)", fontsize=7)
        for y, d in enumerate(data, start=1):
            m = statistics.fmean(d) if r.scenario.stat == "mean" else statistics.median(d)
            ax.annotate(
                f"{m:.3g} {shown}",
                (m, y),
                xytext=(0, 12),
                textcoords="offset points",
                fontsize=7,
                ha="center",
            )
        speedups = [f"{r.speedup(s.name).point:.2f}x vs {s.name}" for s in r.sides[1:]]
        what = "pidproc speed-up" if unit == "s" else "other / pidproc"
        ax.set_title(
            f"{r.scenario.key} {r.scenario.title}\n{what}: " + ", ".join(speedups),
            fontsize=8,
        )
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(
        f"pidproc vs stdlib, interleaved in one process: Linux {info['kernel']}, "
        f"glibc {info['glibc']}, {info['cpu_count']} CPUs, {info['python']}, {info['date']}",
        fontsize=9,
    )
    height = 2.6 * rows + 0.8
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))  # room for the suptitle
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def from_json(data: dict[str, Any]) -> list[Result]:
    """The results of a report's JSON, to draw the report again."""
    results = []
    for sc in data["scenarios"]:
        targets = [
            Target(t["kind"], t["value"], t["other"], t.get("quantity", "time"))
            for t in sc["targets"]
        ]
        scenario = Scenario(
            sc["key"], sc["title"], sc["measures"], [], targets, sc["rounds"], sc["per_round"],
            stat=sc["stat"], note=sc["note"],
            context=[(a, b) for a, b in sc.get("context", [])], unit=sc.get("unit", "s"),
        )  # fmt: skip
        sides = [SideResult(s["name"], s["rounds"], s["extra"]) for s in sc["sides"]]
        results.append(Result(scenario, sides, False, sc["elapsed_s"]))
    return results


def _order(key: str) -> tuple[int, str]:
    """S1 < S4a < S9b < S10: by number, then by the letter."""
    digits = "".join(c for c in key if c.isdigit())
    return (int(digits) if digits else 0, key)


def write(
    results: list[Result],
    directory: Path,
    info: dict[str, Any],
    command: str,
    elapsed: float,
    stem: str = "latest",
) -> tuple[str, list[str]]:
    """Write <stem>.{md,json,png}; return the Markdown and notes for the terminal."""
    directory.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=lambda r: _order(r.scenario.key))
    notes = []
    why = chart(results, directory / f"{stem}.png", info)
    text = markdown(results, info, command, elapsed)
    if why is None:
        text += f"\n![pidproc vs stdlib]({stem}.png)\n"
        notes.append(f"chart: {directory / f'{stem}.png'}")
    else:
        notes.append(f"no chart: {why}")
    (directory / f"{stem}.md").write_text(text)
    with open(directory / f"{stem}.json", "w") as f:
        json.dump(to_json(results, info, command, elapsed), f, separators=(",", ":"))
        f.write("\n")
    notes += [f"report: {directory / f'{stem}.md'}", f"raw: {directory / f'{stem}.json'}"]
    return text, notes


if __name__ == "__main__":
    # Draw a report again from its JSON (after a change to this file):
    #   python bench/_report.py bench/results/latest.json
    source = Path(sys.argv[1])
    with open(source) as f:
        data = json.load(f)
    _, notes = write(
        from_json(data), source.parent, data["machine"], data["command"], data["elapsed_s"],
        source.stem,
    )  # fmt: skip
    print("\n".join(notes))

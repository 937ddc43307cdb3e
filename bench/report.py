"""Turns a run's results into ``results.json``, ``results.md`` and PNG plots.

Everything works from the JSON document, so a saved run can be rendered again
(``python -m bench --report results.json``). Figures are medians of steps and
ratios are ours / each other system, measured side by side in the same run.
Every table has a column (or a value per cell) for each system the run measured,
in the order of ``SYSTEMS``; ours at an older commit (``ours-<commit>``, ``--ours-at``)
comes right before ours, short name ``o@<commit>``, with a table of its own beside ours.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display; chosen before pyplot is imported
import matplotlib.pyplot as plt

from .results import VOLATILE_STEP

__all__ = ["HELD_P99_MS", "SYSTEMS", "Headline", "headline", "highest_rate_held", "markdown", "measured_systems",
           "others_share", "plot", "write"]

Row = dict[str, Any]
# Each system, and its short name in the cells that hold a value per system.
SYSTEMS = {"baseline": "b", "ours": "o", "node-classic": "nc", "node-sharded": "ns"}
OURS = "ours"
_STYLE = {"baseline": ("--", "#999999"), "ours": ("-", "#2a7ab0"), "node-classic": (":", "#3c9a48"),
          "node-sharded": ("-.", "#d08a1f")}
OURS_AT = "ours-"  # ours at an older commit: ours-<commit> (bench.systems.ours_at)
_OURS_AT_STYLE = ("-", "#7b3294")
MODES = (False, True)
HELD_P99_MS = 50.0
# The reference figures for stock python-socketio on this machine.
REFERENCE = {
    "targeted_held": "500–1,000 msg/s",
    "targeted_cpu": "≈ 1.1–1.4 ms",
    "broadcast": "≈ 12,000/s, p99 ≈ 12 s",
    "idle": "≈ 29 KB",
    "emitter_cpu": "≈ 450 µs",
}
PLOTS = ("targeted.png", "scaling.png", "overview.png")


def select(rows: Iterable[Row], kind: str = "step", **match: Any) -> list[Row]:
    return [r for r in rows if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())]


def highest_rate_held(steps: list[Row], p99_limit_ms: float = HELD_P99_MS) -> float | None:
    """The highest offered rate up to which every rate held: the emitter offered
    it and nothing was lost in any repeat, and the median p99 stayed under
    ``p99_limit_ms``. ``None`` if even the lowest rate did not hold."""
    held = None
    for rate in sorted({s["offered_rate"] for s in steps}):
        repeats = [s for s in steps if s["offered_rate"] == rate]
        p99 = _median(s["p99_ms"] for s in repeats)
        if p99 is None or p99 >= p99_limit_ms or any(s["emitter_short"] or s["lost"] for s in repeats):
            break
        held = rate
    return held


def others_share(rows: list[Row], cores: int) -> float:
    """The share of the machine's CPU that other people's work took during the steps."""
    steps = select(rows)
    capacity = sum(r["wall_s"] for r in steps) * cores
    return sum(r["others_cpu_s"] for r in steps) / capacity if capacity else 0.0


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _num(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "–" if value is None else f"{value:,.{digits}f}{unit}"


def _ratio(other: float | None, ours: float | None) -> str:
    return "–" if other in (None, 0) or ours is None else f"{ours / other:.2f}×"


def measured_systems(rows: Iterable[Row]) -> list[str]:
    """The systems the run measured, in the order of ``SYSTEMS``, ours at older commits right before ours."""
    seen = {r["system"] for r in rows}
    older = sorted(system for system in seen if system.startswith(OURS_AT))
    order = [name for system in SYSTEMS for name in ([*older, system] if system == OURS else [system])]
    return [system for system in order if system in seen]


def short_name(system: str) -> str:
    """``b``, ``o``, ``nc``, ``ns``; ``o@<commit>`` for ours at an older commit."""
    return SYSTEMS.get(system) or f"o@{system.removeprefix(OURS_AT)}"


def _style(system: str) -> tuple[str, str]:
    return _STYLE.get(system, _OURS_AT_STYLE)


def _others(systems: list[str]) -> list[str]:
    """The systems ours is compared with: every other one measured, if ours was."""
    return [system for system in systems if system != OURS] if OURS in systems else []


def _mode(compress: bool) -> str:
    return "deflate on" if compress else "deflate off"


def _median_of(rows: list[Row], field: str, scale: float = 1.0, kind: str = "step",
               **match: Any) -> float | None:
    """Median of ``field`` (times ``scale``) over the rows matching ``match``."""
    return _median(r[field] * scale for r in select(rows, kind, **match) if r[field] is not None)


@dataclass(frozen=True)
class Headline:
    """One figure of the summary: its value for each system measured, ours over each other one,
    and the issue's reference for stock python-socketio."""

    label: str
    values: dict[str, str]
    ratios: dict[str, str]
    reference: str


def headline(rows: list[Row]) -> list[Headline]:
    """The summary table, one ``Headline`` per figure and compression mode.

    CPU per message is taken at the lowest rate: at higher ones the 2-core machine
    saturates, and a busy event loop handles messages in batches, which lowers the
    cost per message while latency soars.
    """
    lowest_rate = min((r["offered_rate"] for r in select(rows, scenario="targeted")), default=None)
    figures: list[tuple[str, Callable[[str, bool], float | None], int, str, str, tuple[bool, ...]]] = [
        (f"targeted, highest rate held with p99 < {HELD_P99_MS:g} ms, no loss",
         lambda s, c: highest_rate_held(select(rows, scenario="targeted", system=s, compression=c)),
         0, " msg/s", REFERENCE["targeted_held"], MODES),
        ("server CPU per delivered targeted message at the lowest rate offered",
         lambda s, c: _median_of(rows, "server_cpu_ms_per_msg", scenario="targeted", system=s, compression=c,
                                 offered_rate=lowest_rate),
         3, " ms", REFERENCE["targeted_cpu"], MODES),
        ("broadcast to every user: deliveries per second",
         lambda s, c: _median_of(rows, "deliveries_per_s", scenario="broadcast", system=s, compression=c),
         0, "/s", REFERENCE["broadcast"], MODES),
        ("broadcast: p99 latency",
         lambda s, c: _median_of(rows, "p99_ms", scenario="broadcast", system=s, compression=c),
         0, " ms", "", MODES),
        ("idle memory per connection",
         lambda s, c: _median_of(rows, "bytes_per_connection", 1 / 1024, "idle", system=s, compression=c),
         1, " KiB", REFERENCE["idle"], MODES),
        ("emitter: highest rate one process publishes while the servers run",
         lambda s, c: _median_of(rows, "achieved_rate", scenario="emitter", system=s, compression=c),
         0, " msg/s", "", (False,)),
        ("emitter: CPU per message",
         lambda s, c: _median_of(rows, "emitter_cpu_us_per_msg", scenario="emitter", system=s, compression=c),
         0, " µs", REFERENCE["emitter_cpu"], (False,)),
        ("emitter, one message per call: highest rate",
         lambda s, c: _median_of(rows, "achieved_rate", scenario="emitter-single", system=s, compression=c),
         0, " msg/s", "", (False,)),
        ("emitter, one message per call: CPU per message",
         lambda s, c: _median_of(rows, "emitter_cpu_us_per_msg", scenario="emitter-single", system=s, compression=c),
         0, " µs", "", (False,)),
    ]
    systems = measured_systems(rows)
    table = []
    for label, value, digits, unit, reference, modes in figures:
        for compress in modes:
            got = {system: value(system, compress) for system in systems}
            table.append(Headline(f"{label} ({_mode(compress)})",
                                  {system: _num(got[system], digits, unit) for system in systems},
                                  {other: _ratio(got[other], got[OURS]) for other in _others(systems)}, reference))
    return table


def _table(header: list[str], body: Iterable[Iterable[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return [*lines, ""]


def _each(rows: list[Row], field: str, digits: int, scale: float = 1.0, **match: Any) -> str:
    """``b / o / nc / ns``: the median of ``field`` over the repeats of each system measured."""
    return " / ".join(_num(_median_of(rows, field, scale, system=system, **match), digits)
                      for system in measured_systems(rows))


def _ratio_of(rows: list[Row], field: str, **match: Any) -> str:
    """Ours over each other system measured, ``o/b / o/nc / o/ns``."""
    ours = _median_of(rows, field, system=OURS, **match)
    return " / ".join(_ratio(_median_of(rows, field, system=other, **match), ours)
                      for other in _others(measured_systems(rows))) or "–"


def _per_system(rows: list[Row], label: str) -> str:
    """A column header for cells holding a value per system: ``p99 ms b / o / nc / ns``."""
    return f"{label} {' / '.join(short_name(system) for system in measured_systems(rows))}"


def _ratio_header(rows: list[Row], label: str) -> str:
    others = _others(measured_systems(rows))
    return f"{label} {' / '.join(f'o/{short_name(other)}' for other in others)}" if others else label


def _short_mark(rows: list[Row], **match: Any) -> str:
    short = sorted({r["system"] for r in select(rows, **match) if r["emitter_short"]})
    return f" (emitter short: {', '.join(short)})" if short else ""


def _redis_us_per_msg(row: Row) -> float | None:
    """Redis's CPU µs per delivered message of a step (``None`` for a step without its CPU or deliveries)."""
    redis = row["cpu_s"].get("redis")
    return None if redis is None or not row["delivered"] else redis / row["delivered"] * 1e6


def _field(name: str, scale: float = 1.0) -> Callable[[Row], float | None]:
    return lambda row: None if row[name] is None else row[name] * scale


def _durable_vs_volatile(rows: list[Row], system: str = OURS) -> list[str]:
    """Ours' targeted steps beside the same steps sent volatile, when the run measured them."""
    volatile = select(rows, scenario=VOLATILE_STEP, system=system, compression=False)
    if not volatile:
        return []
    columns: list[tuple[str, Callable[[Row], float | None], int, bool]] = [  # header, figure, digits, ratio
        ("achieved", _field("achieved_rate"), 0, False), ("delivered %", _field("delivered_fraction", 100), 2, False),
        ("p50 ms", _field("p50_ms"), 1, False), ("p99 ms", _field("p99_ms"), 1, False),
        ("server CPU ms/msg", _field("server_cpu_ms_per_msg"), 3, True),
        ("Redis CPU µs/msg", _redis_us_per_msg, 1, True),
        ("emitter CPU µs/msg", _field("emitter_cpu_us_per_msg"), 0, True)]
    body = []
    for rate in sorted({r["offered_rate"] for r in volatile}):
        sides = (select(rows, scenario="targeted", system=system, compression=False, offered_rate=rate),
                 [r for r in volatile if r["offered_rate"] == rate])
        short = " (emitter short)" if any(r["emitter_short"] for side in sides for r in side) else ""
        cells = [f"{rate:,.0f}{short}"]
        for _header, figure, digits, ratio in columns:
            medians = [_median(figure(r) for r in side) for side in sides]  # durable, volatile
            cells.append(" / ".join(_num(median, digits) for median in medians))
            if ratio:
                cells.append(_ratio(medians[1], medians[0]))
        body.append(cells)
    header = ["offered msg/s"]
    for label, _figure, _digits, ratio in columns:
        header += [f"{label} d / v", *(["d/v"] if ratio else [])]
    return [f"### Targeted to {system}: durable vs volatile sends (deflate off)", "",
            "Durable (the default): the routing script also appends each message to its user's history for",
            "connection state recovery; volatile: nothing stored. Medians over the repeats; d/v = durable / volatile.",
            "", *_table(header, body)]


def _ours_then_and_now(rows: list[Row]) -> list[str]:
    """Ours at each older commit the run measured, beside ours now and every other system: the
    durable targeted steps without compression, one row per system and rate, and ours now over each."""
    systems = measured_systems(rows)
    if not any(system.startswith(OURS_AT) for system in systems):
        return []
    # header, figure, digits, and the name of ours' ratio over it (None: no ratio)
    columns: list[tuple[str, Callable[[Row], float | None], int, str | None]] = [
        ("achieved", _field("achieved_rate"), 0, None), ("delivered %", _field("delivered_fraction", 100), 2, None),
        ("p50 ms", _field("p50_ms"), 1, "p50"), ("p99 ms", _field("p99_ms"), 1, "p99"),
        ("server CPU ms/msg", _field("server_cpu_ms_per_msg"), 3, "server CPU"),
        ("Redis CPU µs/msg", _redis_us_per_msg, 1, "Redis CPU"),
        ("emitter CPU µs/msg", _field("emitter_cpu_us_per_msg"), 0, None)]

    def medians(steps: list[Row]) -> list[float | None]:
        return [_median(figure(r) for r in steps) for _label, figure, _digits, _ratio in columns]

    body = []
    for rate in sorted({r["offered_rate"] for r in select(rows, scenario="targeted", compression=False)}):
        match = {"scenario": "targeted", "compression": False, "offered_rate": rate}
        ours = medians(select(rows, system=OURS, **match))
        for system in systems:
            mine = medians(select(rows, system=system, **match))
            cells = [f"{rate:,.0f}{_short_mark(rows, **match)}", system]
            cells += [_num(value, column[2]) for value, column in zip(mine, columns, strict=True)]
            cells += ["–" if system == OURS else _ratio(value, now)
                      for value, now, column in zip(mine, ours, columns, strict=True) if column[3]]
            body.append(cells)
    header = ["offered msg/s", "system", *(column[0] for column in columns),
              *(f"ours / this: {column[3]}" for column in columns if column[3])]
    return ["### Ours then and now (targeted, deflate off)", "",
            "Ours at an older commit (`--ours-at`), ours now, stock python-socketio and Node, on the same load one",
            "after the other in each repeat. Medians over the repeats; ours / this = ours now over that system.",
            "", *_table(header, body)]


def _step_tables(rows: list[Row], cores: int) -> list[str]:
    out: list[str] = []
    for compress in (mode for mode in MODES if select(rows, scenario="targeted", compression=mode)):
        out += [f"### Targeted, {_mode(compress)}", ""]
        body = []
        for rate in sorted({r["offered_rate"] for r in select(rows, scenario="targeted", compression=compress)}):
            match = {"scenario": "targeted", "compression": compress, "offered_rate": rate}
            body.append([f"{rate:,.0f}{_short_mark(rows, **match)}", _each(rows, "achieved_rate", 0, **match),
                         _each(rows, "delivered_fraction", 2, 100, **match), _each(rows, "p50_ms", 1, **match),
                         _each(rows, "p99_ms", 1, **match), _each(rows, "max_ms", 0, **match),
                         _each(rows, "server_cpu_ms_per_msg", 3, **match),
                         _ratio_of(rows, "server_cpu_ms_per_msg", **match)])
        out += _table(["offered msg/s", *(_per_system(rows, label) for label in (
            "achieved", "delivered %", "p50 ms", "p99 ms", "max ms", "server CPU ms/msg")),
            _ratio_header(rows, "CPU ratio")], body)
    out += _ours_then_and_now(rows)
    for system in measured_systems(rows):
        if system == OURS or system.startswith(OURS_AT):
            out += _durable_vs_volatile(rows, system)
    out += ["### Scaling (targeted, fixed rate, deflate off)", ""]
    body = []
    for count in sorted({r["replicas"] for r in select(rows, scenario="scaling")}):
        match = {"scenario": "scaling", "replicas": count}
        body.append([str(count), _each(rows, "achieved_rate", 0, **match),
                     _each(rows, "server_cpu_ms_per_msg", 3, **match),
                     _each(rows, "server_cpu_ms_per_msg", 3, 1 / count, **match),
                     _ratio_of(rows, "server_cpu_ms_per_msg", **match), _each(rows, "p99_ms", 1, **match)])
    out += _table(["replicas", *(_per_system(rows, label) for label in (
        "achieved msg/s", "server CPU ms/msg", "per replica")), _ratio_header(rows, "CPU ratio"),
        _per_system(rows, "p99 ms")], body)
    out += ["### CPU seconds per step (who was busy)", "",
            "Each process's CPU seconds during the step, in the order the steps ran; `others` is what the rest of",
            "the machine used meanwhile; `machine busy` is all of it over the cores' capacity. A process near the",
            "step's wall time was saturated (one core); a machine near 100% left every process waiting.", ""]
    body = []
    for r in select(rows):
        cpu = r["cpu_s"]
        rate = "max" if r["offered_rate"] is None else f"{r['offered_rate']:,.0f}"
        busy = (sum(cpu.values()) + r["others_cpu_s"]) / (r["wall_s"] * cores)
        body.append([r["scenario"], r["system"], _mode(r["compression"]), str(r["replicas"]), rate,
                     _num(r["wall_s"], 1), _num(r["server_cpu_s"], 2), _num(cpu.get("redis"), 2),
                     _num(cpu.get("emitter"), 2), _num(cpu.get("loadgen"), 2), _num(r["others_cpu_s"], 2),
                     f"{busy:.0%}", ", ".join(r["saturated"]) or "–"])
    out += _table(["scenario", "system", "mode", "replicas", "offered", "wall s", "servers", "redis", "emitter",
                   "loadgen", "others", "machine busy", "saturated"], body)
    return out


def markdown(doc: dict[str, Any]) -> str:
    machine, rows = doc["machine"], doc["results"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    lines = [
        f"# Benchmark results ({doc['mode']} run, {doc['started']})", "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}, Python {machine['python']}, Redis {machine['redis']}; {packages}.",
        f"Load average before / after: {doc['load_before']} / {doc['load_after']}. "
        f"The rest of the machine used {doc['others_share']:.0%} of its CPU during the steps.", "",
        "Systems: b = baseline (stock python-socketio, `AsyncRedisManager`), o = ours, nc = Node Socket.IO 4 with",
        "`@socket.io/redis-adapter` classic (`createAdapter`) and `@socket.io/redis-emitter`, ns = the same with",
        "the sharded adapter (`createShardedAdapter`, one channel per room) and a server-side emit as the emitter.",
        "A cell `x / y / …` holds one value per system measured, in that order; o/b, o/nc, o/ns = ours / that system.",
        "", "## Summary", "",
    ]
    systems, others = measured_systems(rows), _others(measured_systems(rows))
    lines += _table(["figure", *systems, *(f"ours / {other}" for other in others), "reference, stock"],
                    ([h.label, *(h.values[s] for s in systems), *(h.ratios[o] for o in others), h.reference]
                     for h in headline(rows)))
    lines += _step_tables(rows, machine["cores"])
    return "\n".join(lines)


def _lines(ax: Any, rows: list[Row], scenario: str, x: str, y: str) -> None:
    """One line per system and mode through the medians of the repeats; each repeat a faint dot."""
    xs: set[float] = set()
    for system in measured_systems(rows):
        for compress in MODES:
            steps = [r for r in select(rows, scenario=scenario, system=system, compression=compress)
                     if r[y] is not None]
            if not steps:
                continue
            points = sorted({r[x] for r in steps})
            medians = [statistics.median(r[y] for r in steps if r[x] == point) for point in points]
            style, color = _style(system)
            line = ax.plot(points, medians, marker="s" if compress else "o", linestyle=style,
                           color=color, alpha=0.55 if compress else 1.0, label=f"{system}, {_mode(compress)}")[0]
            ax.scatter([r[x] for r in steps], [r[y] for r in steps], color=line.get_color(), alpha=0.3, s=12)
            xs.update(points)
    if xs:
        ax.set_xticks(sorted(xs), [f"{point:g}" for point in sorted(xs)])
        ax.minorticks_off()


def _save(fig: Any, line_axes: Any, path: Path) -> None:
    """Grid on line charts, a legend where there is something to name, then the PNG."""
    for ax in line_axes:
        ax.grid(True, alpha=0.3)
    if len(line_axes) and line_axes[0].get_legend_handles_labels()[0]:
        line_axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    rows = doc["results"]
    paths = [out_dir / name for name in PLOTS]

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    axes[0].set(title="Targeted: p99 latency", xlabel="offered msg/s", ylabel="ms", yscale="log", xscale="log")
    _lines(axes[0], rows, "targeted", "offered_rate", "p99_ms")
    axes[1].set(title="Targeted: achieved vs offered", xlabel="offered msg/s", ylabel="achieved msg/s",
                xscale="log")
    _lines(axes[1], rows, "targeted", "offered_rate", "achieved_rate")
    axes[2].set(title="Targeted: server CPU per delivered message", xlabel="offered msg/s", ylabel="ms",
                xscale="log")
    _lines(axes[2], rows, "targeted", "offered_rate", "server_cpu_ms_per_msg")
    _save(fig, axes, paths[0])

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    axes[0].set(title="Scaling: server CPU per delivered message", xlabel="replicas", ylabel="ms (all replicas)")
    _lines(axes[0], rows, "scaling", "replicas", "server_cpu_ms_per_msg")
    axes[1].set(title="Scaling: p99 latency", xlabel="replicas", ylabel="ms", yscale="log")
    _lines(axes[1], rows, "scaling", "replicas", "p99_ms")
    _save(fig, axes, paths[1])

    bars = [("Broadcast deliveries/s", "broadcast", "deliveries_per_s", 1.0),
            ("Idle memory per connection, KiB", "idle", "bytes_per_connection", 1 / 1024),
            ("Emitter top rate, msg/s", "emitter", "achieved_rate", 1.0),
            ("Emitter CPU per message, µs", "emitter", "emitter_cpu_us_per_msg", 1.0)]
    fig, axes = plt.subplots(1, len(bars), figsize=(18, 5))
    for ax, (title, scenario, field, scale) in zip(axes, bars, strict=True):
        labels, values, colors = [], [], []
        for compress in MODES:
            for system in measured_systems(rows):
                match: dict[str, Any] = {"system": system, "compression": compress}
                value = (_median_of(rows, field, scale, "idle", **match) if scenario == "idle"
                         else _median_of(rows, field, scale, scenario=scenario, **match))
                if value is not None:
                    labels.append(f"{system}\n{_mode(compress)}")
                    values.append(value)
                    colors.append(_style(system)[1])
        ax.bar(labels, values, color=colors)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=7, labelrotation=60)
    _save(fig, [], paths[2])
    return paths


def write(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """results.json, results.md and the plots, in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1))
    (out_dir / "results.md").write_text(markdown(doc))
    return [out_dir / "results.json", out_dir / "results.md", *plot(doc, out_dir)]

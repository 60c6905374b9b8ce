"""`edgeoff twin RUN_DIR`: replay a live run (`edgeoff up --out RUN_DIR`) through the offline simulator.

Reads RUN_DIR/results.json (configuration, the sites' injected failures) and RUN_DIR/agent.json (the
agent's twin record), re-simulates the run (edgeoff.evaluation.twin) and prints a table of live against
simulated figures; the last line is JSON: {"apps", "rt_rel_err", "energy_rel_err", "fallbacks_live",
"fallbacks_sim", "placements_agree_pct", "truncated"}. The agent's record is bounded (its
`twin_max_entries`): when it was cut short, one line says so and the comparison covers the recorded
prefix of the run; a run the agent did not record (`record_twin` off) is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeoff.errors import EvaluationError
from edgeoff.evaluation.twin import replay
from edgeoff.knowledge import chain_means
from edgeoff.scenario import load_scenario
from edgeoff.traces import load_node_table


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "twin",
        help="replay a live run through the offline simulator and compare",
        description="Re-simulate an `edgeoff up --out RUN_DIR` run from what it recorded; compare.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of `edgeoff up`")
    parser.set_defaults(func=run)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluationError(f"{path}: not found (is it the --out folder of `edgeoff up`?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"{path}: not readable JSON: {exc}") from None


def run(args: argparse.Namespace) -> int:
    results = _load(args.run_dir / "results.json")
    agent = _load(args.run_dir / "agent.json")
    try:
        config, injected, twin = results["config"], results["injected"], agent["twin"]
        scenario_name = str(config["scenario"])
        dataset = str(config["datasets"][0])
    except (KeyError, TypeError, IndexError):
        raise EvaluationError(
            f"{args.run_dir}: no twin record (run it with this version of `edgeoff up`)"
        ) from None
    if twin is None:
        raise EvaluationError(
            f"{args.run_dir}: the agent did not record the run for replay (its record_twin setting is off; "
            "`edgeoff up` turns it on)"
        )
    scenario = load_scenario(None if scenario_name.startswith("paper") else scenario_name)
    table = load_node_table()
    chains = chain_means(scenario, dataset, {n: (t.mttf_h, t.mttr_h) for n, t in table.items()})
    report = replay(scenario, config, twin, injected, chains)
    if report.truncated:
        print(
            f"edgeoff twin: the agent's record stopped at its cap of {twin.get('max_entries')} entries "
            f"(twin_max_entries): comparing only the first {report.apps} complete application runs"
        )
    _print(report)
    print(json.dumps(report.summary()))
    return 0


def _print(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgeoff twin: {report.apps} application runs, live against simulated")
    for column in ("figure", "live", "simulated", "relative difference"):
        table.add_column(column, justify="right")
    table.add_row(
        "RT, total (s)", f"{report.rt_live_s:.3f}", f"{report.rt_sim_s:.3f}", f"{report.rt_rel_err:+.2%}"
    )
    table.add_row(
        "RT per app (s)",
        f"{report.rt_live_s / report.apps:.4f}",
        f"{report.rt_sim_s / report.apps:.4f}",
        f"overhead {(report.rt_live_s - report.rt_sim_s) / report.apps * 1000:.1f} ms/app",
    )
    table.add_row(
        "energy (J)",
        f"{report.energy_live_j:.3f}",
        f"{report.energy_sim_j:.3f}",
        f"{report.energy_rel_err:+.2%}",
    )
    table.add_row("fallbacks", str(report.fallbacks_live), str(report.fallbacks_sim), "")
    table.add_row(
        "placements agreeing", "", "", f"{report.placements_agree_pct:.1f} % of {report.offloadable_tasks}"
    )
    Console().print(table)

#!/usr/bin/env python3
"""Turns one benchmark result (bench/results/<name>.json, written by
arbor-bench; <name> is the date for a full run, <date>-<groups>[-quick]
otherwise) into <name>.md (a Markdown table per benchmark, with the Arbor
value, the anchor value and their ratio) and <name>-*.png charts, and, with
--readme, replaces the README's Performance section between its markers.

Usage: plot.py RESULT.json [--readme README.md]
Needs matplotlib (`bash scripts/setup.sh --bench` installs it into
target/client-venv).
"""

import argparse
import json
import math
import os
import sys

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
SCHEMAS = ("arbor-bench/1", "arbor-bench/2", "arbor-bench/3")


def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ms(value):
    return "-" if value is None else f"{value:.2f}"


def ratio(value):
    if value is None:
        return "-"
    if value >= 0.1:
        return f"{value:.2f}x"
    return f"{value:.3f}x"


def latency(outcome):
    if not outcome:
        return "-"
    lat = outcome.get("latency") or {}
    return f"{ms(lat.get('p50_ms'))} / {ms(lat.get('p99_ms'))}"


def failures(outcome):
    """Failed transactions, retries and aborted clients, in one cell."""
    if not outcome:
        return "-"
    parts = [f"{outcome.get('abort_rate_pct', 0.0):.2f}%"]
    if outcome.get("retried"):
        parts.append(f"{outcome['retried']} retried")
    if outcome.get("aborted_clients"):
        parts.append(f"{outcome['aborted_clients']} clients aborted")
    return ", ".join(parts)


def errors_of(outcome):
    if outcome and outcome.get("first_error"):
        return outcome["first_error"].replace("|", "\\|")
    return None


def machine_line(report):
    m = report["machine"]
    load = f"load average {fmt(m.get('load_before'), 2)} before, {fmt(m.get('load_after'), 2)} after"
    return (
        f"{m.get('nproc')} cores ({m.get('cpu_model')}), {m.get('memory_gib')} GiB, "
        f"{m.get('os')}, kernel {m.get('kernel')}; Arbor commit `{m.get('git_commit')}`; {load}"
    )


def groups_in_order(rows):
    seen = []
    for row in rows:
        if row["group"] not in seen:
            seen.append(row["group"])
    return seen


def comparison_tables(report):
    lines = []
    rows = report.get("comparisons", [])
    for group in groups_in_order(rows):
        members = [r for r in rows if r["group"] == group]
        anchor = members[0]["anchor_name"]
        unit = members[0]["unit"]
        lines.append(f"### {group}")
        lines.append("")
        lines.append(
            f"| clients | Arbor {unit} | {anchor} {unit} | ratio (Arbor / {anchor}) "
            f"| Arbor p50 / p99 ms | {anchor} p50 / p99 ms | Arbor failed | {anchor} failed |"
        )
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        notes = []
        for r in members:
            a, b = r["arbor"], r.get("anchor")
            lines.append(
                f"| {r['clients']} | {fmt(a['throughput'])} | {fmt(b['throughput']) if b else '-'} "
                f"| {ratio(r.get('ratio'))} | {latency(a)} | {latency(b)} | {failures(a)} | {failures(b)} |"
            )
            for side, outcome in (("Arbor", a), (anchor, b)):
                error = errors_of(outcome)
                if error:
                    notes.append(f"{r['clients']} clients, {side}: first error `{error}`")
        lines.append("")
        for note in notes:
            lines.append(f"- {note}")
        if notes:
            lines.append("")
    return lines


def failover_how(row):
    """Version 1 files have no `stop`: every failover was a kill -9."""
    return row.get("stop") or "kill -9"


def aim_cell(row):
    aim = row.get("aim_median_ms")
    median = (row.get("spread_ms") or {}).get("median")
    if aim is None:
        return "-"
    if median is None:
        return f"median <= {fmt(aim, 0)}: no gap measured"
    verdict = "met" if median <= aim else "NOT met"
    return f"median <= {fmt(aim, 0)}: {verdict}"


def sql_reference(report, group, clients):
    """Arbor's outcome of the SQL benchmark `group` at `clients`, if run."""
    for row in report.get("comparisons", []):
        if row["group"] == group and row["clients"] == clients and row["arbor"].get("ops"):
            return row["arbor"]
    return None


def region_client_lines(report):
    points = report.get("region_client", [])
    if not points:
        return []
    lines = ["### Region client, no SQL (reads and writes straight to the region leaders)", ""]
    lines.append(
        "The same cluster through `RegionClient` directly, next to the SQL benchmark that does the same "
        "work through the gateway in this run (point read vs `point select`, single-key write vs `upsert`; "
        "`-` when the sql group did not run). SQL share: the SQL rate as a fraction of the region-client "
        "rate at the same clients (1.00 = the gateway adds nothing)."
    )
    lines.append("")
    lines.append(
        "| operation | clients | requests/s | keys/s | p50 / p99 ms | failed "
        "| SQL counterpart | SQL tx/s | SQL p50 / p99 ms | SQL share |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    notes = []
    for p in points:
        o = p["outcome"]
        group = p.get("sql_counterpart")
        sql = sql_reference(report, group, p["clients"]) if group else None
        share = sql["throughput"] / o["throughput"] if sql and o["throughput"] > 0 else None
        lines.append(
            f"| {p['operation']} | {p['clients']} | {fmt(o['throughput'])} | {fmt(p['keys_per_second'])} "
            f"| {latency(o)} | {failures(o)} | {group or '-'} | {fmt(sql['throughput']) if sql else '-'} "
            f"| {latency(sql)} | {ratio(share)} |"
        )
        error = errors_of(o)
        if error:
            notes.append(f"{p['operation']}, {p['clients']} clients: first error `{error}`")
    lines.append("")
    for note in notes:
        lines.append(f"- {note}")
    if notes:
        lines.append("")
    return lines


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.1f}"


def soak_lines(report):
    """The soak (issues 4 and 6): idle CPU per store against the aim, and
    every process's RSS over the load with a flat/grows verdict."""
    soak = report.get("soak")
    if not soak:
        return []
    lines = [f"## Soak: {soak['regions']:,} idle regions, then {soak['minutes']} minutes of light load", ""]
    hibernated = soak.get("hibernated_after_seconds")
    lines.append(
        f"A fresh cluster split to {soak['regions']:,} regions in {fmt(soak.get('split_seconds'), 0)} s; "
        + (f"at least 99 % of each store's regions hibernated {fmt(hibernated, 0)} s later. " if hibernated is not None
           else "the wait for hibernation ran out first (the tables give each store's hibernating regions). ")
        + f"Load: {soak['writes_per_second']} region-client writes/s spread over the preloaded keys "
        f"(so over the regions) and {soak['proposals_per_second']} root proposals/s to the separate 3-peer root group "
        f"(`rootbench-*`), open loop. Done: {soak['writes']['ok']:,} writes ({soak['writes']['errors']} failed), "
        f"{soak['proposals']['ok']:,} proposals ({soak['proposals']['errors']} failed, "
        f"{soak['proposals']['skipped'] + soak['writes']['skipped']} ticks skipped). "
        f"Load average {fmt(soak.get('load_average_start'), 2)} at the start, {fmt(soak.get('load_average_end'), 2)} at the end."
    )
    lines.append("")
    before, after = soak.get("idle_before") or {}, soak.get("idle_after") or {}
    stores_after = {s["name"]: s for s in after.get("stores", [])}
    if before:
        aim = soak["idle_cpu_aim_pct"]
        lines.append(
            f"Idle CPU per store over {fmt(before.get('seconds'), 0)} s windows, % of one core "
            f"(aim: under {fmt(aim, 0)} % with {soak['regions']:,} idle regions):"
        )
        lines.append("")
        lines.append("| store | regions (hibernating) before | CPU % before | regions (hibernating) after | CPU % after | RSS MiB before / after | aim met |")
        lines.append("|---|---:|---:|---:|---:|---:|---|")
        for s in before.get("stores", []):
            a = stores_after.get(s["name"])
            met = s["cpu_pct"] < aim and (a is None or a["cpu_pct"] < aim)
            after_regions = "{} ({})".format(a["regions"], a["hibernating"]) if a else "-"
            after_cpu = "{:.2f}".format(a["cpu_pct"]) if a else "-"
            after_rss = mib(a["rss_kib"]) if a else "-"
            lines.append(
                f"| {s['name']} | {s['regions']} ({s['hibernating']}) | {s['cpu_pct']:.2f} "
                f"| {after_regions} | {after_cpu} | {mib(s['rss_kib'])} / {after_rss} | {'yes' if met else 'no'} |"
            )
        lines.append("")
    memory = soak.get("memory", [])
    if memory:
        lines.append(
            f"RSS of every process, sampled every {soak['sample_seconds']} s during the load. The slope is the "
            f"least-squares fit over the second half; a process is flat when that slope, over 10 minutes, stays under "
            f"{fmt(100 * soak['growth_limit_share'], 0)} % of its starting RSS, bounded to "
            f"{fmt(soak['growth_limit_min_kib'] / 1024, 1)}–{fmt(soak['growth_limit_max_kib'] / 1024, 1)} MiB (the limit column)."
        )
        lines.append("")
        lines.append("| process | RSS MiB start | after | max | slope 2nd half KiB/min | limit KiB/10 min | verdict |")
        lines.append("|---|---:|---:|---:|---:|---:|---|")
        for m in memory:
            slope = m.get("slope_second_half_kib_per_min")
            slope_cell = "-" if slope is None else "{:+.1f}".format(slope)
            lines.append(
                f"| {m['name']} | {mib(m['rss_start_kib'])} | {mib(m['rss_end_kib'])} | {mib(m['rss_max_kib'])} "
                f"| {slope_cell} | {m['limit_kib_per_10_min']:.0f} | {m['verdict']} |"
            )
        lines.append("")
    return lines


def report_markdown(report, chart_names):
    date = report["date"]
    groups = report.get("groups") or []
    # The groups of a full run (soak runs only when named).
    every = ["root", "tso", "sql", "clients", "region", "failover", "regions"]
    partial = f" (groups: {', '.join(groups)})" if groups and set(every) - set(groups) else ""
    lines = [f"# Arbor benchmarks, {date}{partial}{' (quick run)' if report.get('quick') else ''}", ""]
    lines.append(f"Machine: {machine_line(report)}.")
    lines.append(
        f"Run took {fmt(report.get('wall_seconds', 0) / 60, 1)} minutes"
        f"{'' if report.get('complete') else ' and did NOT complete (see notes)'}."
    )
    lines.append("")
    lines.append("## Setup")
    lines.append("")
    for setting in report.get("setup", []):
        lines.append(f"- **{setting['system']}**: {setting['detail']}")
    lines.append("")
    anchored = ("comparisons", "measurements", "region_client", "client_scaling", "region_scaling", "failover")
    if any(report.get(key) for key in anchored):
        lines.append("## Arbor against its anchors")
        lines.append("")
    lines.extend(comparison_tables(report))
    measurements = report.get("measurements", [])
    if measurements:
        lines.append("### TSO: GetTimestamps from the lease holder (no anchor)")
        lines.append("")
        lines.append("| request | requests/s | timestamps/s | p50 / p99 ms | errors |")
        lines.append("|---|---:|---:|---:|---:|")
        for m in measurements:
            o = m["outcome"]
            lines.append(
                f"| {m['name']} | {fmt(m['throughput'])} | {fmt(m['units_per_second'])} | {latency(o)} | {o.get('errors', 0)} |"
            )
        lines.append("")
    lines.extend(region_client_lines(report))
    scaling = report.get("client_scaling", [])
    if scaling:
        lines.append("### Scaling with clients: point select")
        lines.append("")
        lines.append("| clients | Arbor tx/s | PostgreSQL tx/s | ratio | Arbor p50 / p99 ms | PostgreSQL p50 / p99 ms |")
        lines.append("|---:|---:|---:|---:|---:|---:|")
        for p in scaling:
            a, b = p["arbor"], p.get("postgres")
            r = a["throughput"] / b["throughput"] if b and b["throughput"] > 0 else None
            lines.append(
                f"| {p['clients']} | {fmt(a['throughput'])} | {fmt(b['throughput']) if b else '-'} | {ratio(r)} | {latency(a)} | {latency(b)} |"
            )
        lines.append("")
    regions = report.get("region_scaling", [])
    if regions:
        lines.append("### Scaling with regions: cost of more regions")
        lines.append("")
        lines.append(
            "The coordinators are restarted with a smaller `--region-split-keys` and the regions split "
            "by themselves; measured once the region count stops moving (or the wait runs out): "
            "CPU of the three stores together, idle and under a 16-client point-select load, "
            "and the lease holder's idle CPU (CPU-seconds per second)."
        )
        lines.append("")
        lines.append(
            "| regions | split threshold (keys) | settle s | point select tx/s | p50 / p99 ms "
            "| stores CPU idle | stores CPU loaded | gateway CPU loaded | coordinator CPU idle |"
        )
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p in regions:
            o = p["point_select"]
            threshold = "default" if not p["split_keys"] else f"{p['split_keys']:,}"
            lines.append(
                f"| {p['regions']} | {threshold} | {fmt(p['settle_seconds'], 0)} | {fmt(o['throughput'])} | {latency(o)} "
                f"| {p['store_cpu_idle']:.2f} | {p['store_cpu_loaded']:.2f} | {p.get('gateway_cpu_loaded', 0):.2f} | {p['coordinator_cpu_idle']:.2f} |"
            )
        lines.append("")
    failover = report.get("failover", [])
    if failover:
        lines.append("### Failover gaps")
        lines.append("")
        lines.append("| process | how | client | repetitions | gaps measured | min ms | median ms | max ms | aim |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|---|")
        for f in failover:
            s = f["spread_ms"]
            lines.append(
                f"| {f['kind']} | {failover_how(f)} | {f['client']} | {len(f['details'])} | {s.get('count', 0)} "
                f"| {fmt(s.get('min'), 0)} | {fmt(s.get('median'), 0)} | {fmt(s.get('max'), 0)} | {aim_cell(f)} |"
            )
        lines.append("")
        for f in failover:
            for detail in f["details"]:
                lines.append(f"- {detail}")
        lines.append("")
    lines.extend(soak_lines(report))
    if chart_names:
        lines.append("## Charts")
        lines.append("")
        for title, name in chart_names:
            lines.append(f"![{title}]({name})")
            lines.append("")
    notes = report.get("notes", [])
    if notes:
        lines.append("## Notes")
        lines.append("")
        for note in notes:
            lines.append(f"- {note}")
        lines.append("")
    return "\n".join(lines)


def readme_section(report, chart_names, results_dir_rel, stem):
    """The README's Performance section: one table of every comparison,
    TSO and failover in a line each, and the charts."""
    date = report["date"]
    lines = [README_START, ""]
    lines.append(
        f"Latest run: {date}{' (quick)' if report.get('quick') else ''}, `bench/run`, "
        f"{fmt(report.get('wall_seconds', 0) / 60, 1)} minutes. Machine: {machine_line(report)}. "
        f"Everything (Arbor's 9 processes, PostgreSQL, etcd, the load generators) shares this one machine, "
        f"so these numbers compare systems under the same constraints, not production capacity. "
        f"Full tables, setup and notes: [`{results_dir_rel}/{stem}.md`]({results_dir_rel}/{stem}.md)."
    )
    lines.append("")
    lines.append(
        "| benchmark | clients | Arbor | anchor | ratio | Arbor p50 / p99 ms | anchor p50 / p99 ms "
        "| Arbor failed | anchor failed |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in report.get("comparisons", []):
        b = r.get("anchor")
        lines.append(
            f"| {r['group']} ({r['unit']}) | {r['clients']} | {fmt(r['arbor']['throughput'])} "
            f"| {r['anchor_name']}: {fmt(b['throughput']) if b else '-'} | {ratio(r.get('ratio'))} "
            f"| {latency(r['arbor'])} | {latency(b)} | {failures(r['arbor'])} | {failures(b)} |"
        )
    lines.append("")
    adapted = [n for n in report.get("notes", []) if "because Arbor refused" in n or "left out" in n]
    transactions = [n for n in report.get("notes", []) if n.startswith("TPC-B-like:")]
    if adapted or transactions:
        lines.append(
            f"{len(adapted)} statement(s) of the pgbench scripts were adapted because Arbor refused the standard "
            f"form (the same adapted text ran on both systems; listed in the full results). "
            + " ".join(transactions)
        )
        lines.append("")
    tso = report.get("measurements", [])
    if tso:
        best = max(tso, key=lambda m: m["units_per_second"])
        single = [m for m in tso if m["name"].startswith("count=1,")]
        parts = [f"{m['name']}: {fmt(m['units_per_second'])} timestamps/s" for m in single]
        parts.append(f"best batched ({best['name']}): {fmt(best['units_per_second'])} timestamps/s")
        lines.append(f"TSO (lease holder): {'; '.join(parts)}.")
        lines.append("")
    regions = report.get("region_scaling", [])
    if regions:
        parts = [
            f"{p['regions']} regions: {fmt(p['point_select']['throughput'])} point selects/s, "
            f"stores idle {p['store_cpu_idle']:.2f} CPU"
            for p in regions
        ]
        lines.append(f"Regions (16-client point select; CPU-seconds per second of the 3 stores): {'; '.join(parts)}.")
        lines.append("")
    for p in report.get("region_client", []):
        if p["clients"] == 16:
            lines.append(
                f"Region client, no SQL, 16 clients, {p['operation']}: {fmt(p['outcome']['throughput'])} requests/s, "
                f"p50 / p99 {latency(p['outcome'])} ms."
            )
            lines.append("")
    for f in report.get("failover", []):
        s = f["spread_ms"]
        lines.append(
            f"Failover, {failover_how(f)} {f['kind']}: gap min {fmt(s.get('min'), 0)} / median {fmt(s.get('median'), 0)} / "
            f"max {fmt(s.get('max'), 0)} ms over {len(f['details'])} runs."
        )
        lines.append("")
    for title, name in chart_names:
        lines.append(f"![{title}]({results_dir_rel}/{name})")
        lines.append("")
    lines.append(README_END)
    return "\n".join(lines)


def charts(report, out_dir, stem):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, suffix, title):
        name = f"{stem}-{suffix}.png"
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name), dpi=110)
        plt.close(fig)
        made.append((title, name))

    rows = [r for r in report.get("comparisons", []) if r.get("ratio")]
    if rows:
        fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.4))
        labels = [
            f"{r['group']}, {r['clients']} cl." if " vs " in r["group"] else f"{r['group']} vs {r['anchor_name']}, {r['clients']} cl."
            for r in rows
        ]
        values = [r["ratio"] for r in rows]
        ax.barh(range(len(rows)), values, color=["#2a7ab9" if v >= 1 else "#d9822b" for v in values])
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xlabel("throughput ratio Arbor / anchor (log scale; 1 = parity)")
        ax.set_title("Arbor against PostgreSQL and etcd")
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.3g}x", va="center", fontsize=7)
        save(fig, "ratios", "Throughput ratio to each anchor")

    scaling = report.get("client_scaling", [])
    if scaling:
        fig, ax = plt.subplots(figsize=(7, 4))
        clients = [p["clients"] for p in scaling]
        ax.plot(clients, [p["arbor"]["throughput"] for p in scaling], "o-", label="Arbor")
        pg = [(p["clients"], p["postgres"]["throughput"]) for p in scaling if p.get("postgres")]
        if pg:
            ax.plot([c for c, _ in pg], [t for _, t in pg], "s-", label="PostgreSQL")
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients)
        ax.set_xticklabels([str(c) for c in clients])
        ax.set_yscale("log")
        ax.set_xlabel("clients")
        ax.set_ylabel("point selects / s (log)")
        ax.set_title("Point-select throughput as clients grow")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        save(fig, "clients", "Throughput as clients grow")

    regions = report.get("region_scaling", [])
    if regions:
        fig, ax = plt.subplots(figsize=(7, 4))
        counts = [max(p["regions"], 1) for p in regions]
        ax.plot(counts, [p["point_select"]["throughput"] for p in regions], "o-", color="#2a7ab9", label="point select tx/s")
        ax.set_xscale("log")
        ax.set_xlabel("regions (log)")
        ax.set_ylabel("point selects / s", color="#2a7ab9")
        ax2 = ax.twinx()
        ax2.plot(counts, [p["store_cpu_idle"] for p in regions], "s--", color="#d9822b", label="stores CPU, idle")
        ax2.plot(counts, [p["store_cpu_loaded"] for p in regions], "^-", color="#b33", label="stores CPU, loaded")
        ax2.set_ylabel("CPU-seconds per second (3 stores)")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center left")
        ax.set_title("Cost as regions grow")
        ax.grid(True, which="both", alpha=0.3)
        save(fig, "regions", "Throughput and store CPU as regions grow")

    failover = [f for f in report.get("failover", []) if f["gaps_ms"]]
    if failover:
        fig, ax = plt.subplots(figsize=(7, 3))
        for i, f in enumerate(failover):
            ax.scatter(f["gaps_ms"], [i] * len(f["gaps_ms"]), s=40, zorder=3)
            median = f["spread_ms"].get("median")
            if median is not None:
                ax.plot([median, median], [i - 0.25, i + 0.25], color="black")
        ax.set_yticks(range(len(failover)))
        ax.set_yticklabels([f"{failover_how(f)} {f['kind']}" for f in failover], fontsize=8)
        ax.set_xlabel("ms until served again (dots: runs, bar: median)")
        ax.set_xlim(left=0)
        ax.set_ylim(-0.6, len(failover) - 0.4)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title("Failover gaps")
        save(fig, "failover", "Failover gaps")
    return made


def update_readme(path, section):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        print(f"plot.py: {path} has no {README_START} ... {README_END} markers; left alone", file=sys.stderr)
        return False
    text = text[:start] + section + text[end + len(README_END):]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result")
    parser.add_argument("--readme", help="README to update between the bench markers")
    args = parser.parse_args()
    with open(args.result, encoding="utf-8") as f:
        report = json.load(f)
    if report.get("schema") not in SCHEMAS:
        sys.exit(f"plot.py: {args.result} has schema {report.get('schema')!r}, expected one of {SCHEMAS}")
    out_dir = os.path.dirname(os.path.abspath(args.result))
    # The Markdown and the charts take the JSON's name, so a partial or quick
    # run never overwrites a full run's files of the same day.
    stem = os.path.splitext(os.path.basename(args.result))[0]
    chart_names = charts(report, out_dir, stem)
    md_path = os.path.join(out_dir, f"{stem}.md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(report_markdown(report, chart_names))
    print(f"plot.py: wrote {md_path} and {len(chart_names)} charts")
    if args.readme:
        readme_dir = os.path.dirname(os.path.abspath(args.readme))
        rel = os.path.relpath(out_dir, readme_dir)
        if update_readme(args.readme, readme_section(report, chart_names, rel, stem)):
            print(f"plot.py: updated the Performance section of {args.readme}")


if __name__ == "__main__":
    main()

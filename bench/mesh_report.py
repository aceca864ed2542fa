"""Turns bench/run's raw runs into the summary (medians, min–max, same-run ratios), the
Markdown report and the PNG plots."""
from __future__ import annotations

import statistics
from pathlib import Path

MODES = ("direct", "ambient", "sidecar")
PROXY_MODES = ("ambient", "sidecar")
PERCENTILES = ("p50", "p90", "p99", "p99.9")
# The targets: reported against, never asserted.
TARGETS = {"memory_ratio_100": 1 / 20, "added_p99_ms": 0.2, "vcpu_per_1000rps": 0.06,
           "idle_node_rss_mib": 8}


def stats(values: list) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def summarize(traffic: dict, scale: dict) -> dict:
    """traffic: mode -> [per-run dict]; scale: mode -> [per-run [per-N dict]]."""

    def per_mode(path, modes=MODES):
        return {m: stats([path(r) for r in traffic[m]]) for m in modes}

    def same_run(fn, num, den):
        return stats([fn(a, b) for a, b in zip(traffic[num], traffic[den])])

    s: dict = {
        "throughput_gbps": {str(n): per_mode(lambda r, n=n: r[f"throughput_{n}_gbps"])
                            for n in (1, 4)},
        "latency_1000_ms": {p: per_mode(lambda r, p=p: r["latency_1000"][p])
                            for p in PERCENTILES},
        "latency_max_ms": {p: per_mode(lambda r, p=p: r["latency_max"][p])
                           for p in PERCENTILES},
        "max_qps": per_mode(lambda r: r["latency_max"]["qps"]),
        "churn": {"qps": per_mode(lambda r: r["churn"]["qps"]),
                  "p99_ms": per_mode(lambda r: r["churn"]["p99"])},
        "relay_latency_1000_ms": {p: stats([r["relay_latency_1000"][p]
                                            for r in traffic["direct"]])
                                  for p in PERCENTILES},
        "vcpu_per_1000rps_per_proxy": per_mode(lambda r: r["vcpu_per_1000rps_per_proxy"],
                                               PROXY_MODES),
        # Direct mode's runs also carry the reference relay's load.
        "errors": per_mode(lambda r: r["latency_1000"]["errors"] + r["latency_max"]["errors"] +
                           r["churn"]["errors"] +
                           r.get("relay_latency_1000", {}).get("errors", 0)),
    }
    ratios = {}
    for n in (1, 4):
        key = f"throughput_{n}_gbps"
        ratios[f"throughput_{n}_ambient_vs_direct"] = same_run(
            lambda a, d, k=key: a[k] / d[k], "ambient", "direct")
        ratios[f"throughput_{n}_ambient_vs_sidecar"] = same_run(
            lambda a, d, k=key: a[k] / d[k], "ambient", "sidecar")
    for m in PROXY_MODES:
        for p in ("p90", "p99"):
            ratios[f"added_{p}_ms_{m}"] = same_run(
                lambda x, d, p=p: x["latency_1000"][p] - d["latency_1000"][p], m, "direct")
        ratios[f"max_qps_{m}_vs_direct"] = same_run(
            lambda x, d: x["latency_max"]["qps"] / d["latency_max"]["qps"], m, "direct")
        ratios[f"churn_qps_{m}_vs_direct"] = same_run(
            lambda x, d: x["churn"]["qps"] / d["churn"]["qps"], m, "direct")
    ratios["added_p99_ms_relay"] = stats([r["relay_latency_1000"]["p99"] -
                                          r["latency_1000"]["p99"] for r in traffic["direct"]])
    s["ratios"] = ratios
    s["scale"] = summarize_scale(scale)
    return s


def summarize_scale(scale: dict) -> dict:
    """Per mode and pod count: medians of memory and CPU; per-pod marginal memory from
    the smallest to the largest pod count; ambient/sidecar memory ratio per run."""
    out: dict = {}
    for m in PROXY_MODES:
        runs = scale[m]
        counts = [row["pods_per_node"] for row in runs[0]]
        rows = []
        for i, n in enumerate(counts):
            def col(path, i=i):
                return stats([path(run[i]) for run in runs])
            rows.append({
                "pods_per_node": n, "processes": runs[0][i]["processes"],
                "idle_rss_mib": col(lambda r: r["idle"]["rss_kib"] / 1024),
                "idle_pss_mib": col(lambda r: r["idle"]["pss_kib"] / 1024),
                "idle_cpu_ms_per_s": col(lambda r: 1000 * r["idle"]["cpu_seconds"] /
                                         r["idle"]["wall_seconds"]),
                "load_rss_mib": col(lambda r: r["load"]["rss_kib"] / 1024),
                "load_pss_mib": col(lambda r: r["load"]["pss_kib"] / 1024),
                "load_vcpu": col(lambda r: r["load"]["cpu_seconds"] / r["load"]["wall_seconds"]),
                "load_p99_ms": col(lambda r: r["load"]["p99"]),
            })
        pods_added = 2 * (counts[-1] - counts[0])
        marginal = None
        if pods_added > 0:
            marginal = {k: stats([(run[-1]["idle"][f"{k}_kib"] - run[0]["idle"][f"{k}_kib"]) /
                                  pods_added for run in runs]) for k in ("rss", "pss")}
        out[m] = {"rows": rows, "marginal_kib_per_pod": marginal}
    out["memory_ratio_ambient_vs_sidecar"] = {
        str(row["pods_per_node"]): stats([a[i]["idle"]["rss_kib"] / sc[i]["idle"]["rss_kib"]
                                          for a, sc in zip(scale["ambient"], scale["sidecar"])])
        for i, row in enumerate(scale["ambient"][0])}
    out["idle_node_rss_mib"] = stats([run[0]["idle"]["rss_kib"] / 1024 / run[0]["processes"]
                                      for run in scale["ambient"]])
    return out


def f(s: dict, digits: int = 2) -> str:
    """median [min–max]."""
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"


def markdown(res: dict, plots: dict) -> str:
    s, mach = res["summary"], res["machine"]
    r = s["ratios"]
    sc = s["scale"]
    lines = [f"# Mesh benchmark {res['timestamp']}", "",
             f"Machine: {mach['cpu']}, {mach['cores']} cores, kernel {mach['kernel']}, "
             f"{mach['memory_gib']:.0f} GiB; {mach['ztunnel']}; fortio {mach['fortio']}.",
             f"Each figure: median of {res['config']['runs']} runs, [min–max]; ratios are "
             f"computed within a run. Total time {res['seconds']:.0f} s."
             + (" **Quick smoke run: no figure here means anything.**" if res["quick"] else ""),
             "", "## Against the targets", "",
             "| target | measured | goal |", "|---|---|---|"]
    top = sc["ambient"]["rows"][-1]["pods_per_node"]
    ratio_top = sc["memory_ratio_ambient_vs_sidecar"][str(top)]
    lines += [
        f"| ambient / sidecar total proxy RSS at {top} pods per node | 1/{1 / ratio_top['median']:.0f}"
        f" ({f(ratio_top, 3)}) | ≤ 1/20 |",
        f"| added p99 at 1000 req/s, 1 KiB (ambient − direct) | {f(r['added_p99_ms_ambient'])} ms"
        f" | ≤ 0.2 ms |",
        f"| proxy vCPU per 1000 req/s (per proxy on the path) | "
        f"{f(s['vcpu_per_1000rps_per_proxy']['ambient'], 3)} | ≤ 0.06 |",
        f"| idle node process RSS (1 pod per node) | {f(sc['idle_node_rss_mib'], 1)} MiB "
        f"| ≤ 8 MB |", "",
        "## Throughput (iperf3, cross-node, Gb/s)", "",
        "| streams | direct | ambient | sidecar | ambient/direct | ambient/sidecar |",
        "|---|---|---|---|---|---|"]
    for n in ("1", "4"):
        t = s["throughput_gbps"][n]
        lines.append(f"| {n} | {f(t['direct'], 1)} | {f(t['ambient'], 1)} | "
                     f"{f(t['sidecar'], 1)} | {f(r[f'throughput_{n}_ambient_vs_direct'])} | "
                     f"{f(r[f'throughput_{n}_ambient_vs_sidecar'])} |")
    lines += ["", "## Latency: 1 KiB request/response, 16 connections, 1000 req/s (ms)", "",
              "| mode | p50 | p90 | p99 | p99.9 |", "|---|---|---|---|---|"]
    for m in MODES:
        lines.append(f"| {m} | " + " | ".join(f(s["latency_1000_ms"][p][m], 3)
                                              for p in PERCENTILES) + " |")
    lines.append("| reference relay (HAProxy, 2 hops, no TLS) | " + " | ".join(
        f(s["relay_latency_1000_ms"][p], 3) for p in PERCENTILES) + " |")
    lines += ["", f"Added latency (same run, vs direct): ambient p90 "
              f"{f(r['added_p90_ms_ambient'], 3)} ms, p99 {f(r['added_p99_ms_ambient'], 3)} ms; "
              f"sidecar p90 {f(r['added_p90_ms_sidecar'], 3)} ms, p99 "
              f"{f(r['added_p99_ms_sidecar'], 3)} ms; reference relay p99 "
              f"{f(r['added_p99_ms_relay'], 3)} ms.",
              f"Proxy vCPU per 1000 req/s, per proxy on the path: ambient "
              f"{f(s['vcpu_per_1000rps_per_proxy']['ambient'], 3)}, sidecar "
              f"{f(s['vcpu_per_1000rps_per_proxy']['sidecar'], 3)}.", "",
              "## Maximum rate and connection churn", "",
              "| mode | max req/s (16 conns, 1 KiB) | p99 at max (ms) | churn req/s "
              "(new connection each) | churn p99 (ms) |", "|---|---|---|---|---|"]
    for m in MODES:
        lines.append(f"| {m} | {f(s['max_qps'][m], 0)} | {f(s['latency_max_ms']['p99'][m], 2)} | "
                     f"{f(s['churn']['qps'][m], 0)} | {f(s['churn']['p99_ms'][m], 2)} |")
    lines += ["", f"Same-run ratios: max req/s ambient/direct "
              f"{f(r['max_qps_ambient_vs_direct'])}, sidecar/direct "
              f"{f(r['max_qps_sidecar_vs_direct'])}; churn req/s ambient/direct "
              f"{f(r['churn_qps_ambient_vs_direct'])}, sidecar/direct "
              f"{f(r['churn_qps_sidecar_vs_direct'])}.", "",
              "## Scale: pods per node (all proxy processes of both nodes)", "",
              "| pods/node | mode | processes | idle RSS MiB | idle PSS MiB | idle CPU ms/s | "
              "RSS under load MiB | vCPU under load | p99 under load (ms) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(sc["ambient"]["rows"]):
        for m in PROXY_MODES:
            x = sc[m]["rows"][i]
            lines.append(f"| {x['pods_per_node']} | {m} | {x['processes']} | "
                         f"{f(x['idle_rss_mib'], 1)} | {f(x['idle_pss_mib'], 1)} | "
                         f"{f(x['idle_cpu_ms_per_s'], 1)} | {f(x['load_rss_mib'], 1)} | "
                         f"{f(x['load_vcpu'], 3)} | {f(x['load_p99_ms'], 2)} |")
    lines.append("")
    for m in PROXY_MODES:
        mg = sc[m]["marginal_kib_per_pod"]
        if mg:
            lines.append(f"- Marginal memory per added pod, {m}: RSS {f(mg['rss'], 0)} KiB, "
                         f"PSS {f(mg['pss'], 0)} KiB.")
    lines.append("- Ambient/sidecar total RSS per pod count: " + ", ".join(
        f"{n}: {f(v, 3)}" for n, v in sc["memory_ratio_ambient_vs_sidecar"].items()) + ".")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{k}]({Path(v).name})" for k, v in plots.items()]
    return "\n".join(lines) + "\n"


def plot(res: dict, stem: Path) -> dict:
    """Writes <stem>-memory.png, -latency.png, -throughput.png; returns name -> path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["summary"]
    colors = {"direct": "#777777", "ambient": "#1f77b4", "sidecar": "#d62728"}
    out = {}

    def err(stat_list):
        med = [x["median"] for x in stat_list]
        return med, [[m - x["min"] for m, x in zip(med, stat_list)],
                     [x["max"] - m for m, x in zip(med, stat_list)]]

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in PROXY_MODES:
        rows = s["scale"][m]["rows"]
        med, e = err([x["idle_rss_mib"] for x in rows])
        ax.errorbar([x["pods_per_node"] for x in rows], med, yerr=e, marker="o", capsize=3,
                    label=f"{m} (RSS)", color=colors[m])
        med, e = err([x["idle_pss_mib"] for x in rows])
        ax.errorbar([x["pods_per_node"] for x in rows], med, yerr=e, marker="x", capsize=3,
                    linestyle="--", label=f"{m} (PSS)", color=colors[m])
    ax.set_xlabel("pods per node (2 nodes)")
    ax.set_ylabel("total proxy memory, idle (MiB)")
    ax.set_yscale("log")
    ax.set_title("Proxy memory vs pod count")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    out["memory"] = save(fig, stem, "memory")

    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.2
    series = [(m, [s["latency_1000_ms"][p][m] for p in PERCENTILES], colors[m]) for m in MODES]
    series.append(("reference relay (HAProxy, no TLS)",
                   [s["relay_latency_1000_ms"][p] for p in PERCENTILES], "#bbbbbb"))
    for j, (label, stat_list, color) in enumerate(series):
        med, e = err(stat_list)
        ax.bar([i + (j - 1.5) * width for i in range(len(PERCENTILES))], med, width, yerr=e,
               capsize=3, label=label, color=color)
    ax.set_xticks(range(len(PERCENTILES)), PERCENTILES)
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("1 KiB request/response at 1000 req/s, 16 connections")
    ax.legend(fontsize="small")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    out["latency"] = save(fig, stem, "latency")

    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.25
    for j, m in enumerate(MODES):
        med, e = err([s["throughput_gbps"][n][m] for n in ("1", "4")])
        ax.bar([i + (j - 1) * width for i in range(2)], med, width, yerr=e, capsize=3,
               label=m, color=colors[m])
    ax.set_xticks(range(2), ["1 stream", "4 streams"])
    ax.set_ylabel("Gb/s")
    ax.set_title("iperf3 throughput, cross-node")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    out["throughput"] = save(fig, stem, "throughput")
    return out


def save(fig, stem: Path, name: str) -> str:
    path = stem.parent / f"{stem.name}-{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return str(path)

//! Medians over the repetitions, the table and the JSON report.

use super::*;

pub(super) fn medians(
    samples: &[(Proxy, usize, Sample)],
    proxies: &[Proxy],
    concs: &[usize],
) -> Vec<(Proxy, usize, Sample)> {
    let mut rows = Vec::new();
    for &conc in concs {
        for &p in proxies {
            let of: Vec<&Sample> = samples
                .iter()
                .filter(|(q, c, _)| *q == p && *c == conc)
                .map(|(_, _, s)| s)
                .collect();
            if of.is_empty() {
                continue;
            }
            let m = |f: fn(&Sample) -> f64| median(of.iter().map(|s| f(s)).collect());
            rows.push((
                p,
                conc,
                Sample {
                    rps: m(|s| s.rps),
                    p50_ms: m(|s| s.p50_ms),
                    p99_ms: m(|s| s.p99_ms),
                    cpu_ms_per_1k: m(|s| s.cpu_ms_per_1k),
                    rest_cpu_ms_per_1k: m(|s| s.rest_cpu_ms_per_1k),
                    rss_mib: m(|s| s.rss_mib),
                    hwm_mib: m(|s| s.hwm_mib),
                    idle_rss_mib: m(|s| s.idle_rss_mib),
                    requests: of.iter().map(|s| s.requests).sum(),
                    errors: of.iter().map(|s| s.errors).sum(),
                    v2_share: m(|s| s.v2_share),
                },
            ));
        }
    }
    rows
}

pub(super) fn print_table(rows: &[(Proxy, usize, Sample)], reps: usize, pods: u8) {
    println!();
    println!(
        "medians of {reps} run(s); clients spread over {pods} pod(s), one HBONE connection each \
         to the waypoint; CPU and RSS are the waypoint process's"
    );
    println!(
        "| waypoint | clients | req/s | p50 ms | p99 ms | CPU ms / 1k req | RSS MiB | rest CPU ms / 1k | v2 share | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (p, c, s) in rows {
        println!(
            "| {} | {c} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {:.0} | {:.1}% | {} |",
            p.name(),
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.cpu_ms_per_1k,
            s.rss_mib,
            s.rest_cpu_ms_per_1k,
            s.v2_share * 100.0,
            s.errors
        );
    }
    let find = |p: Proxy, c: usize| {
        rows.iter()
            .find(|(q, k, _)| *q == p && *k == c)
            .map(|r| &r.2)
    };
    let mut concs: Vec<usize> = rows.iter().map(|r| r.1).collect();
    concs.dedup();
    let mut header = false;
    for c in concs {
        let (Some(a), Some(e)) = (find(Proxy::Ambit, c), find(Proxy::Envoy, c)) else {
            continue;
        };
        if !header {
            println!();
            println!(
                "| ambit / Envoy | clients | req/s (higher is better) | p50 | p99 | CPU / req | RSS |"
            );
            println!("|---|---:|---:|---:|---:|---:|---:|");
            header = true;
        }
        println!(
            "| ratio | {c} | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
            a.rps / e.rps,
            a.p50_ms / e.p50_ms,
            a.p99_ms / e.p99_ms,
            a.cpu_ms_per_1k / e.cpu_ms_per_1k,
            a.rss_mib / e.rss_mib
        );
    }
}

fn sample_json(s: &Sample) -> String {
    format!(
        "\"rps\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"cpu_ms_per_1k\": {:.1}, \
         \"rest_cpu_ms_per_1k\": {:.1}, \"rss_mib\": {:.2}, \"hwm_mib\": {:.2}, \
         \"idle_rss_mib\": {:.2}, \"requests\": {}, \"errors\": {}, \"v2_share\": {:.4}",
        s.rps,
        s.p50_ms,
        s.p99_ms,
        s.cpu_ms_per_1k,
        s.rest_cpu_ms_per_1k,
        s.rss_mib,
        s.hwm_mib,
        s.idle_rss_mib,
        s.requests,
        s.errors,
        s.v2_share
    )
}

pub(super) fn to_json(
    samples: &[(Proxy, usize, Sample)],
    rows: &[(Proxy, usize, Sample)],
    opts: &Opts,
) -> String {
    let list = |v: &[(Proxy, usize, Sample)]| {
        v.iter()
            .map(|(p, c, s)| {
                format!(
                    "    {{\"waypoint\": \"{}\", \"clients\": {c}, {}}}",
                    p.name(),
                    sample_json(s)
                )
            })
            .collect::<Vec<_>>()
            .join(",\n")
    };
    format!(
        "{{\n  \"reps\": {}, \"warmup_s\": {:.1}, \"measure_s\": {:.1}, \"waypoint_threads\": {WAYPOINT_THREADS}, \"client_pods\": {},\n  \"runs\": [\n{}\n  ],\n  \"medians\": [\n{}\n  ]\n}}\n",
        opts.reps,
        opts.warmup.as_secs_f64(),
        opts.measure.as_secs_f64(),
        opts.pods,
        list(samples),
        list(rows)
    )
}

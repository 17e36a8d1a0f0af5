//! The table, the ratios between paths, and the JSON the harness prints.

use std::fmt::Write as _;

use super::Figures;

pub(super) fn print_table(rows: &[(&str, Figures)], bulk: u64) {
    println!();
    println!(
        "{:<17} {:>16} {:>11} {:>11} {:>14} {:>18}",
        "path",
        format!("{} MiB Gbit/s", bulk >> 20),
        "p50 µs",
        "p99 µs",
        "new conns/s",
        "KiB per idle conn"
    );
    for (name, f) in rows {
        println!(
            "{:<17} {:>16.2} {:>11.1} {:>11.1} {:>14.0} {:>12.1} (n={})",
            name,
            f.throughput_gbps,
            f.p50_us,
            f.p99_us,
            f.conns_per_sec,
            f.rss_per_idle_kib,
            f.idle_count
        );
    }
    let find = |n: &str| rows.iter().find(|(name, _)| *name == n).map(|(_, f)| f);
    if let (Some(direct), Some(nodes)) = (find("direct TCP"), find("two nodes")) {
        println!(
            "two nodes / direct TCP: throughput {:.2}x, p50 latency {:.2}x",
            nodes.throughput_gbps / direct.throughput_gbps,
            nodes.p50_us / direct.p50_us
        );
    }
    if let (Some(hb), Some(fd)) = (find("HBONE"), find("HBONE fd (C ABI)")) {
        println!("{}", compare("HBONE fd (C ABI) / HBONE", fd, hb, ""));
    }
    if let (Some(h2), Some(h3)) = (find("HBONE"), find("HBONE/HTTP3")) {
        println!(
            "{}",
            compare("HBONE/HTTP3 / HBONE", h3, h2, " (target >= 0.7)")
        );
    }
    if let (Some(tls), Some(hb)) = (find("TLS relay"), find("HBONE")) {
        println!();
        println!(
            "HBONE / TLS relay: throughput {:.2}x (target >= 0.9), p50 latency {:.2}x (target <= 1.1), new conns {:.2}x",
            hb.throughput_gbps / tls.throughput_gbps,
            hb.p50_us / tls.p50_us,
            hb.conns_per_sec / tls.conns_per_sec
        );
    }
}

/// `name: throughput Nx<target>, p50 …, p99 …, new conns …`: path `a` against path `b`
/// (latency and connection ratios only where `b` measured them).
fn compare(name: &str, a: &Figures, b: &Figures, target: &str) -> String {
    let mut line = format!(
        "{name}: throughput {:.2}x{target}",
        a.throughput_gbps / b.throughput_gbps
    );
    if b.p50_us > 0.0 && b.conns_per_sec > 0.0 {
        let _ = write!(
            line,
            ", p50 latency {:.2}x, p99 {:.2}x, new conns {:.2}x",
            a.p50_us / b.p50_us,
            a.p99_us / b.p99_us,
            a.conns_per_sec / b.conns_per_sec
        );
    }
    line
}

pub(super) fn to_json(rows: &[(&str, Figures)], bulk: u64) -> String {
    let mut out = format!("{{\n  \"bulk_bytes\": {bulk},\n  \"paths\": [\n");
    for (i, (name, f)) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"path\": \"{name}\", \"throughput_gbps\": {:.3}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \
             \"conns_per_sec\": {:.0}, \"rss_per_idle_kib\": {:.2}, \"idle_count\": {}}}{}",
            f.throughput_gbps,
            f.p50_us,
            f.p99_us,
            f.conns_per_sec,
            f.rss_per_idle_kib,
            f.idle_count,
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    out.push_str("  ]\n}\n");
    out
}

//! `ambitctl`: operator tool for ambit — certificates and the live service graph; policy
//! checks, tunnels and config dumps as those land.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use ambit_identity::{
    CaError, CaFiles, CaOptions, CertificateAuthority, CertificateInfo, ChainVerifier, SpiffeId,
    TrustBundle, TrustDomain, Usage, format_time,
};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Operator tool for the ambit mesh data plane.
#[derive(Debug, Parser)]
#[command(name = "ambitctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the built-in certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue and inspect workload certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Serve a live service graph (web page and JSON API) from Istio's standard metrics:
    /// straight from the proxies' /metrics, or from a Prometheus server.
    Graph {
        /// A proxy's metrics URL, e.g. http://127.0.0.2:15020/metrics (repeat for each proxy).
        #[arg(long = "metrics", required_unless_present = "prometheus")]
        metrics: Vec<String>,
        /// A Prometheus server that scrapes the proxies, e.g. http://127.0.0.1:9090.
        #[arg(long, conflicts_with = "metrics")]
        prometheus: Option<String>,
        /// Where to serve the page.
        #[arg(long, default_value = "127.0.0.1:15030")]
        listen: std::net::SocketAddr,
        /// How often to poll, e.g. 2s.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        interval: Duration,
        /// How long rates are averaged over, e.g. 30s.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        window: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a new CA and write ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem
    /// (Istio's plugged-in CA file names).
    Init {
        /// Directory to write the CA files to (created if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Trust domain the CA issues for.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// Sign workloads with an intermediate instead of the root.
        #[arg(long)]
        intermediate: bool,
        /// Lifetime of the root, e.g. 10y, 365d.
        #[arg(long, default_value = "10y", value_parser = parse_duration)]
        ttl: Duration,
        /// Overwrite existing CA files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Issue a workload certificate; writes cert-chain.pem, key.pem and root-cert.pem.
    Issue {
        /// SPIFFE id to issue for, e.g. spiffe://cluster.local/ns/default/sa/web.
        #[arg(long)]
        id: String,
        /// Lifetime, e.g. 24h, 90m, 7d.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// Directory holding the CA files (from `ambitctl ca init`).
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// Directory to write the workload files to (created if missing).
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the SPIFFE id, validity and issuer of each certificate in a PEM file.
    Inspect {
        /// A PEM file with one or more certificates (leaf first).
        file: PathBuf,
        /// Also verify the chain against the roots in this PEM file.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambitctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ca(CaCommand::Init {
            dir,
            trust_domain,
            intermediate,
            ttl,
            force,
        }) => ca_init(&dir, &trust_domain, intermediate, ttl, force),
        Command::Cert(CertCommand::Issue {
            id,
            ttl,
            ca_dir,
            out_dir,
            force,
        }) => cert_issue(&id, ttl, &ca_dir, &out_dir, force),
        Command::Cert(CertCommand::Inspect { file, bundle }) => {
            cert_inspect(&file, bundle.as_deref())
        }
        Command::Graph {
            metrics,
            prometheus,
            listen,
            interval,
            window,
        } => {
            let source = match prometheus {
                Some(p) => ambit_examples::graph::GraphSource::Prometheus(p),
                None => ambit_examples::graph::GraphSource::Metrics(metrics),
            };
            let options = ambit_examples::graph::GraphOptions {
                source,
                interval,
                window,
            };
            graph(listen, options)
        }
    }
}

/// Serves the graph until Ctrl-C.
fn graph(listen: std::net::SocketAddr, options: ambit_examples::graph::GraphOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("--listen {listen}"))?;
        let bound = listener.local_addr()?;
        let _server = ambit_examples::graph::serve_graph(listener, options);
        println!("service graph: http://{bound}/  (JSON: http://{bound}/api/graph)");
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}

fn ca_init(dir: &Path, td: &str, intermediate: bool, ttl: Duration, force: bool) -> Result<()> {
    let td = TrustDomain::new(td).with_context(|| format!("--trust-domain {td:?}"))?;
    let mut opts = CaOptions::new(td.clone());
    opts.root_ttl = ttl;
    if intermediate {
        opts = opts.with_intermediate();
    }
    let ca = CertificateAuthority::with_options(opts)?;
    ca.to_files()?.write_dir(dir, force).map_err(|e| match e {
        CaError::Exists { .. } => anyhow::anyhow!("{e} (use --force to overwrite)"),
        e => e.into(),
    })?;
    println!(
        "created CA for trust domain {td} in {} ({})",
        dir.display(),
        if intermediate {
            "root + intermediate"
        } else {
            "root"
        }
    );
    Ok(())
}

fn cert_issue(id: &str, ttl: Duration, ca_dir: &Path, out_dir: &Path, force: bool) -> Result<()> {
    let id = SpiffeId::parse(id).with_context(|| format!("--id {id:?}"))?;
    let files = CaFiles::read_dir(ca_dir).map_err(|e| match e {
        CaError::Io {
            path,
            action,
            detail,
        } => anyhow::anyhow!(
            "{}: {action} (create a CA with `ambitctl ca init`): {detail}",
            path.display()
        ),
        e => e.into(),
    })?;
    let ca = CertificateAuthority::from_files(&files, None)
        .with_context(|| format!("loading the CA from {}", ca_dir.display()))?;
    let svid = ca.issue(&id, ttl)?;
    write_files(
        out_dir,
        &[
            ("cert-chain.pem", &svid.chain_pem()),
            ("key.pem", &svid.key_pem()),
            ("root-cert.pem", &ca.bundle().to_pem()),
        ],
        force,
    )?;
    println!(
        "issued {id} valid until {} in {}",
        format_time(svid.not_after()),
        out_dir.display()
    );
    Ok(())
}

fn cert_inspect(file: &Path, bundle: Option<&Path>) -> Result<()> {
    use ambit_identity::pki_types::CertificateDer;
    use ambit_identity::pki_types::pem::PemObject;

    let pem = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: bad PEM", file.display()))?;
    if chain.is_empty() {
        bail!("{}: no CERTIFICATE block found", file.display());
    }
    let now = SystemTime::now();
    for (i, der) in chain.iter().enumerate() {
        let info = CertificateInfo::from_der(der)
            .with_context(|| format!("{}: certificate #{}", file.display(), i + 1))?;
        if i > 0 {
            println!();
        }
        print_info(i, &info, now);
    }
    if let Some(bundle_path) = bundle {
        let roots = std::fs::read(bundle_path)
            .with_context(|| format!("{}: cannot read", bundle_path.display()))?;
        let leaf_id = CertificateInfo::from_der(&chain[0])?.spiffe_id();
        let td = match &leaf_id {
            Ok(id) => id.trust_domain(),
            Err(e) => bail!("{}: cannot verify: {e}", file.display()),
        };
        let bundle = TrustBundle::from_pem(td, &roots)
            .with_context(|| format!("{}", bundle_path.display()))?;
        println!();
        for usage in [Usage::ClientAuth, Usage::ServerAuth] {
            match ChainVerifier::default().verify(&bundle, &chain, usage, now) {
                Ok(id) => println!("verified for {usage}: {id}"),
                Err(e) => bail!("{}: verification for {usage} failed: {e}", file.display()),
            }
        }
    }
    Ok(())
}

fn print_info(index: usize, info: &CertificateInfo, now: SystemTime) {
    let role = if info.is_ca {
        "CA certificate"
    } else {
        "certificate"
    };
    println!("{role} #{}", index + 1);
    match info.spiffe_id() {
        Ok(id) => println!("  spiffe id:   {id}"),
        Err(e) => println!("  spiffe id:   none ({e})"),
    }
    println!("  subject:     {}", or_empty(&info.subject));
    println!("  issuer:      {}", or_empty(&info.issuer));
    println!("  serial:      {}", info.serial);
    println!("  not before:  {}", format_time(info.not_before));
    println!("  not after:   {}", format_time(info.not_after));
    let status = if now < info.not_before {
        "NOT YET VALID".to_owned()
    } else if now > info.not_after {
        "EXPIRED".to_owned()
    } else {
        let left = info.not_after.duration_since(now).unwrap_or_default();
        format!("valid, {} left", human(left))
    };
    println!("  status:      {status}");
    for uri in &info.uri_sans {
        println!("  uri san:     {uri}");
    }
    for dns in &info.dns_sans {
        println!("  dns san:     {dns}");
    }
}

/// `1y2d`, `3h05m`, `42s`: coarse, for people.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (y, d_, h, m) = (s / 31_536_000, s / 86_400 % 365, s / 3600 % 24, s / 60 % 60);
    match (y, d_, h) {
        (0, 0, 0) if m == 0 => format!("{s}s"),
        (0, 0, 0) => format!("{m}m"),
        (0, 0, h) => format!("{h}h{m:02}m"),
        (0, d_, h) => format!("{d_}d{h}h"),
        (y, d_, _) => format!("{y}y{d_}d"),
    }
}

fn or_empty(s: &str) -> &str {
    if s.is_empty() { "(empty)" } else { s }
}

fn write_files(dir: &Path, files: &[(&str, &String)], force: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    if !force {
        for (name, _) in files {
            let path = dir.join(name);
            if path.exists() {
                bail!(
                    "{}: already exists (use --force to overwrite)",
                    path.display()
                );
            }
        }
    }
    for (name, content) in files {
        let path = dir.join(name);
        write_private(&path, content, name.ends_with("key.pem"))
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

fn write_private(path: &Path, content: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    opts.open(path)?.write_all(content.as_bytes())
}

/// Parses `90s`, `30m`, `24h`, `7d`, `10y` and sums like `1h30m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?}: expected a number before '{c}'"))?;
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'y' => 365 * 86_400,
            _ => return Err(format!("{s:?}: unknown unit '{c}' (use s, m, h, d or y)")),
        };
        total += Duration::from_secs(n.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "{s:?}: missing unit after {digits} (use s, m, h, d or y)"
        ));
    }
    if total.is_zero() {
        return Err(format!("{s:?}: duration must be positive"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "10", "h", "5w", "0s", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}

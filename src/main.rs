//! The command line: parse, set up logging and the runtime, and hand over to `edgeguard::run`.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use edgeguard::config::{self, Config, Rejected};
use edgeguard::host::HostRoot;
use edgeguard::sink::SinkKind;
use edgeguard::{LogControl, Mode, Options};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "edgeguard",
    version,
    about = "Security agent for Azure IoT Edge devices"
)]
struct Cli {
    /// Where the host's root filesystem is visible (`/host` in the module container).
    #[arg(long, global = true, env = "EDGEGUARD_HOST_ROOT", default_value = "/")]
    host_root: PathBuf,

    /// Directory for state that must survive restarts (agent id); a mounted volume in the container.
    #[arg(
        long,
        global = true,
        env = "EDGEGUARD_STATE_DIR",
        default_value = "/var/lib/edgeguard"
    )]
    state_dir: PathBuf,

    /// A local configuration (module twin, desired properties, or the configuration object) used
    /// when there is no module twin. EDGEGUARD_CONFIG_JSON may hold the same JSON inline.
    #[arg(long, global = true, env = "EDGEGUARD_CONFIG")]
    config: Option<PathBuf>,

    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(long, global = true, env = "EDGEGUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// One JSON security message per line, as sent upstream.
    Json,
    /// One readable line per event; alerts highlighted on a terminal.
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SinkArg {
    Stdout,
    File,
}

#[derive(clap::Args, Debug)]
struct SinkArgs {
    /// Where messages go (default: edgeHub under IoT Edge, else stdout).
    #[arg(long, env = "EDGEGUARD_SINK", value_enum)]
    sink: Option<SinkArg>,

    /// File for `--sink file` (default: messages.jsonl in the state directory).
    #[arg(long, env = "EDGEGUARD_OUTPUT")]
    output: Option<PathBuf>,

    /// How stdout and file sinks write messages (edgeHub always gets JSON).
    #[arg(long, env = "EDGEGUARD_FORMAT", value_enum, default_value_t = FormatArg::Json)]
    format: FormatArg,

    /// Address for the Prometheus endpoint (`/metrics`) during `run`, or `off`. Loopback by
    /// default: the module runs in the host's network namespace, where 0.0.0.0 would show the
    /// device's metrics to its whole LAN.
    #[arg(long, env = "EDGEGUARD_METRICS_ADDR", default_value = "127.0.0.1:9600", value_parser = parse_metrics_addr)]
    metrics_addr: MetricsAddr,

    /// Seconds to keep delivering queued messages after SIGTERM/SIGINT (what is left stays in
    /// the spool for the next start).
    #[arg(long, env = "EDGEGUARD_SHUTDOWN_GRACE", default_value_t = 10)]
    shutdown_grace: u64,

    /// Lifetime of the SAS tokens the module signs, in seconds; the connection is renewed at
    /// 80 % of it.
    #[arg(long, env = "EDGEGUARD_TOKEN_LIFETIME", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(5..=31_536_000))]
    token_lifetime: u64,

    /// MQTT port of edgeHub or IoT Hub (8883 unless a gateway listens elsewhere).
    #[arg(long, env = "EDGEGUARD_HUB_PORT")]
    hub_port: Option<u16>,

    /// Mark telemetry as Azure security messages (`$.ifid=urn:azureiot:Security:SecurityAgent:1`).
    #[arg(long, env = "EDGEGUARD_SECURITY_INTERFACE")]
    security_interface: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Collect and send security messages until stopped (SIGTERM/SIGINT flush what is queued).
    Run(SinkArgs),
    /// Run every periodic collector once, print the message(s), and exit.
    Snapshot(SinkArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Ask the running agent (through `STATE_DIR/status.sock`) how it is: exit 0 when healthy,
    /// 1 when a collector is Down, edgeHub has been unreachable too long, or no agent answers.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// Print the report as JSON (the same document the `status` direct method returns).
    #[arg(long)]
    json: bool,

    /// Seconds edgeHub may be unreachable before the agent counts as unhealthy.
    #[arg(long, env = "EDGEGUARD_HUB_GRACE", default_value_t = 300)]
    hub_grace: u64,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a twin JSON file: print the effective configuration (as reported properties) on
    /// stdout and each rejected key on stderr. Exit code 1 when any key was rejected.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    edgeguard::memory::tune_allocator();
    let cli = Cli::parse();
    let log_control = init_logging(cli.log_format);
    match real_main(cli, log_control) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("edgeguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr with the filter from RUST_LOG (default `info`); the returned control lets the
/// twin's `logLevel` replace that filter at run time.
fn init_logging(format: LogFormat) -> LogControl {
    // `Targets` rather than `EnvFilter`: the same `target=level` directives without span and
    // field filters, and without the regular-expression engine they bring (issue 19: binary size).
    use tracing_subscriber::{
        Layer, filter::Targets, layer::SubscriberExt, reload, util::SubscriberInitExt,
    };
    // Unset or blank means `info`: an empty filter would let errors through only, and an
    // operator reading `iotedge logs` would see nothing at all.
    let started = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".to_string());
    let info = || Targets::new().with_default(tracing::Level::INFO);
    let initial = move || started.parse::<Targets>().unwrap_or_else(|_| info());
    let (filter, handle) = reload::Layer::new(initial());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry().with(filter).with(fmt).init();
    LogControl(std::sync::Arc::new(move |directives: Option<&str>| {
        let filter = match directives {
            Some(d) => d.parse::<Targets>().map_err(|e| e.to_string())?,
            None => initial(),
        };
        handle.reload(filter).map_err(|e| e.to_string())
    }))
}

fn real_main(cli: Cli, log_control: LogControl) -> Result<ExitCode> {
    let (sink_args, mode) = match cli.command {
        Command::Config(ConfigCommand::Check { file }) => return config_check(&file),
        Command::Status(args) => return status(&cli.state_dir, &args),
        Command::Run(a) => (a, Mode::Run),
        Command::Snapshot(a) => (a, Mode::Snapshot),
    };
    let (config, rejected, config_version) = local_config(cli.config.as_deref())?;
    let sink = match sink_args.sink {
        Some(SinkArg::Stdout) => SinkKind::Stdout,
        Some(SinkArg::File) => SinkKind::File(
            sink_args
                .output
                .unwrap_or_else(|| cli.state_dir.join("messages.jsonl")),
        ),
        None => match edgeguard::hub::EdgeEnvironment::from_process_env()
            .context("reading the IoT Edge environment")?
        {
            Some(mut env) => {
                if let Some(port) = sink_args.hub_port {
                    env.port = port;
                }
                SinkKind::EdgeHub(Box::new(env))
            }
            None => SinkKind::Stdout,
        },
    };
    if sink_args.format == FormatArg::Pretty && matches!(sink, SinkKind::EdgeHub(_)) {
        tracing::warn!("--format pretty applies to the stdout and file sinks; edgeHub gets JSON");
    }
    let opts = Options {
        host_root: host_root(cli.host_root),
        state_dir: cli.state_dir,
        sink,
        format: match sink_args.format {
            FormatArg::Json => edgeguard::sink::Format::Json,
            FormatArg::Pretty => edgeguard::sink::Format::Pretty,
        },
        config,
        rejected,
        config_version,
        shutdown_grace: Duration::from_secs(sink_args.shutdown_grace),
        metrics_addr: sink_args.metrics_addr.0,
        hub: edgeguard::hub::HubOptions {
            token_lifetime: Duration::from_secs(sink_args.token_lifetime),
            security_interface: sink_args.security_interface,
            ..edgeguard::hub::HubOptions::default()
        },
        log_control: Some(log_control),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        edgeguard::run(opts, mode, shutdown).await?;
        Ok::<_, anyhow::Error>(())
    });
    // A read stuck in the kernel on a blocking thread (a hung network file system under the host
    // root) must not keep the process from exiting once everything else has stopped.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The host root, resolved by the walk instead of openat2 when `EDGEGUARD_HOST_RESOLVER=walk`
/// (what kernels before 5.6 get; for tests on newer ones).
fn host_root(root: std::path::PathBuf) -> HostRoot {
    let host = HostRoot::new(root);
    match std::env::var("EDGEGUARD_HOST_RESOLVER").as_deref() {
        Ok("walk") => host.with_resolver(edgeguard::kernel::root::Resolver::Walk),
        _ => host,
    }
}

/// A socket address, or none for `off`.
#[derive(Debug, Clone, Copy)]
struct MetricsAddr(Option<std::net::SocketAddr>);

fn parse_metrics_addr(s: &str) -> Result<MetricsAddr, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(MetricsAddr(None));
    }
    s.parse()
        .map(|a| MetricsAddr(Some(a)))
        .map_err(|e| format!("expected HOST:PORT or off: {e}"))
}

/// Defaults, then the local file (or EDGEGUARD_CONFIG_JSON) when given.
fn local_config(file: Option<&std::path::Path>) -> Result<(Config, Vec<Rejected>, Option<i64>)> {
    if let Some(path) = file {
        return config::load_file(path)
            .with_context(|| format!("loading the configuration from {}", path.display()));
    }
    if let Ok(text) = std::env::var("EDGEGUARD_CONFIG_JSON") {
        return config::load_str(&text)
            .context("loading the configuration from EDGEGUARD_CONFIG_JSON");
    }
    Ok((Config::default(), Vec::new(), None))
}

fn config_check(file: &std::path::Path) -> Result<ExitCode> {
    let (cfg, rejected, version) = config::load_file(file)
        .with_context(|| format!("loading the configuration from {}", file.display()))?;
    let reported = config::reported(&cfg, version, &rejected);
    let text = serde_json::to_string_pretty(&reported).context("printing the configuration")?;
    // A reader that stops early (`| head`) is not an error worth a panic.
    if let Err(e) = writeln!(std::io::stdout(), "{text}")
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e).context("writing the configuration to stdout");
    }
    for r in &rejected {
        eprintln!(
            "rejected {}: {:?}: {} (using {})",
            r.key, r.error_type, r.message, r.used
        );
    }
    if rejected.is_empty() {
        eprintln!("configuration ok");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} key(s) rejected; they keep their previous values",
            rejected.len()
        );
        Ok(ExitCode::from(1))
    }
}

/// `edgeguard status`: the running agent's report, and whether it is healthy.
fn status(state_dir: &std::path::Path, args: &StatusArgs) -> Result<ExitCode> {
    let path = state_dir.join(edgeguard::status::socket::FILE_NAME);
    let grace = Duration::from_secs(args.hub_grace);
    let report = match edgeguard::status::socket::query(&path, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edgeguard status: {}", edgeguard::text::error_chain(&e));
            return Ok(ExitCode::from(1));
        }
    };
    let text = if args.json {
        serde_json::to_string_pretty(&report).context("printing the report")?
    } else {
        report.render(grace)
    };
    if let Err(e) = writeln!(std::io::stdout(), "{}", text.trim_end())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e).context("writing the report to stdout");
    }
    Ok(if report.problems(grace).is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Completes on SIGTERM (edgeAgent stopping the module) or SIGINT.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

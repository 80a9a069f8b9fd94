//! Where messages go. A sink is a task that takes [`Record`]s from the outbox and answers each
//! with a [`Delivery`]: `Ack` once the message is durably handed over (written and flushed,
//! fsynced, or acknowledged by the broker), `Retry` otherwise. The outbox decides what to
//! resend; a sink keeps no state of its own.
//!
//! There are three delivery paths, chosen by [`SinkKind`] (`--sink`):
//! - stdout and file, the local sinks, run here by [`run`];
//! - edgeHub, run by [`crate::hub::run`]: the module's MQTT session, which besides delivering
//!   messages (the `securityEvents` and `alerts` outputs) carries the module twin, direct
//!   methods and the `securityMessages` input, so it lives in `hub/` with them.

use crate::pipeline::outbox::{Delivery, Record};
use std::path::PathBuf;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How the local sinks write a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// The message as sent upstream, one JSON document per line (pipes, files, tools).
    #[default]
    Json,
    /// One readable line per event ([`crate::pretty`]); alerts highlighted on a terminal.
    Pretty,
}

/// The sinks selectable on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// One JSON message per line on standard output.
    Stdout,
    /// One JSON message per line appended to a file, synced before the acknowledgement.
    File(PathBuf),
    /// The module's `securityEvents` output through edgeHub (module identity, MQTT, twin):
    /// [`crate::hub::run`].
    EdgeHub(Box<crate::hub::EdgeEnvironment>),
}

impl std::fmt::Display for SinkKind {
    /// Where messages go, for the start-up line and the status report.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkKind::Stdout => f.write_str("stdout"),
            SinkKind::File(path) => write!(f, "file {}", path.display()),
            SinkKind::EdgeHub(env) => write!(
                f,
                "edgeHub {}:{} as {}",
                env.gateway_host,
                env.port,
                env.client_id()
            ),
        }
    }
}

/// The sinks run by [`run`]; edgeHub is [`crate::hub::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalSink {
    /// One message per line on standard output.
    Stdout,
    /// One message per line appended to a file, synced before the acknowledgement.
    File(PathBuf),
}

/// Runs a local sink until `records` closes. A sink that can never deliver again (stdout
/// closed by the reader) cancels `fatal` so the agent shuts down instead of retrying forever.
pub async fn run(
    kind: LocalSink,
    format: Format,
    records: mpsc::Receiver<Record>,
    deliveries: mpsc::Sender<Delivery>,
    fatal: CancellationToken,
) {
    match kind {
        LocalSink::Stdout => {
            let render = match format {
                Format::Json => Render::Json,
                Format::Pretty if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
                    Render::Pretty(crate::pretty::Style::Color)
                }
                Format::Pretty => Render::Pretty(crate::pretty::Style::Plain),
            };
            let out = tokio::io::stdout();
            write_lines(out, false, render, records, deliveries, fatal).await
        }
        LocalSink::File(path) => {
            match tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await
            {
                Ok(f) => {
                    let render = match format {
                        Format::Json => Render::Json,
                        Format::Pretty => Render::Pretty(crate::pretty::Style::Plain),
                    };
                    write_lines(f, true, render, records, deliveries, fatal).await
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot open the output file");
                    fatal.cancel();
                }
            }
        }
    }
}

trait SyncWrite: AsyncWrite + Unpin {
    async fn sync(&mut self) -> std::io::Result<()>;
}

impl SyncWrite for tokio::io::Stdout {
    async fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SyncWrite for tokio::fs::File {
    async fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data().await
    }
}

/// What a line holds.
#[derive(Debug, Clone, Copy)]
enum Render {
    Json,
    Pretty(crate::pretty::Style),
}

async fn write_lines<W: SyncWrite>(
    mut out: W,
    durable: bool,
    render: Render,
    mut records: mpsc::Receiver<Record>,
    deliveries: mpsc::Sender<Delivery>,
    fatal: CancellationToken,
) {
    while let Some(r) = records.recv().await {
        let mut result = match render {
            Render::Json => match out.write_all(&r.body).await {
                Ok(()) => out.write_all(b"\n").await,
                e => e,
            },
            Render::Pretty(style) => {
                let lines = crate::pretty::render_message(&r.body, style);
                out.write_all(lines.as_bytes()).await
            }
        };
        if result.is_ok() {
            result = out.flush().await;
        }
        if result.is_ok() && durable {
            result = out.sync().await;
        }
        let delivery = match result {
            Ok(()) => Delivery::Ack(r.id),
            Err(e) => {
                tracing::error!(error = %e, "writing a message failed");
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    fatal.cancel();
                }
                Delivery::Retry(r.id)
            }
        };
        if deliveries.send(delivery).await.is_err() {
            break;
        }
    }
}

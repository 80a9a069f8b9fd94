//! The agent's two small HTTP/1.1 endpoints (the metrics endpoint on TCP, the status socket on
//! a unix socket) share one server loop: a bounded number of connections at once, a deadline
//! for each, and accept errors counted rather than fatal. Each endpoint brings only its answer.

use crate::metrics::Metrics;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// A listener the loop can take connections from.
pub trait Accept {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_stream(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_stream(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_stream(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// How one endpoint serves.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The `component` label of `edgeguard_errors_total` for accept failures.
    pub component: &'static str,
    /// Connections served at once; more wait.
    pub clients: usize,
    /// Time to read a request's headers.
    pub header_timeout: Duration,
    /// Time a connection may stay open.
    pub connection_timeout: Duration,
}

/// Answers every request on `listener` with `respond` until `cancel`.
pub async fn serve<L, R>(
    metrics: Arc<Metrics>,
    listener: L,
    limits: Limits,
    respond: R,
    cancel: CancellationToken,
) where
    L: Accept,
    R: Fn(&Metrics, &Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.clients));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept_stream() => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, component = limits.component, "accept failed");
                    metrics.error(limits.component, "accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (m, respond) = (metrics.clone(), respond.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let (m, respond) = (m.clone(), respond.clone());
                async move { Ok::<_, Infallible>(respond(&m, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if tokio::time::timeout(limits.connection_timeout, conn)
                .await
                .is_err()
            {
                tracing::debug!(component = limits.component, "connection timed out");
            }
        });
    }
}

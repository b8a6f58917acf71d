//! The HTTP server loop: hyper's HTTP/1.1 server with a header-read timeout (which `axum::serve`
//! does not expose), a cap on open connections, TCP_NODELAY, and graceful shutdown that lets
//! in-flight requests finish.
//!
//! HTTP/1.1 only (issue #11.6): the protocol-sniffing auto builder read a connection's first
//! bytes with no timeout, so a client that sent nothing, or half an HTTP/2 preface, held its
//! connection forever. hyper's HTTP/1 server starts the header-read timer as soon as it waits
//! for a request head, on a new connection and between keep-alive requests alike, so every such
//! connection is closed after HEADER_READ_TIMEOUT. (An HTTP/2 preface is an invalid HTTP/1
//! request and is answered and closed at once.)

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::IntGauge;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Limits of the server loop.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub grace: Duration,
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: ServerLimits,
    connections: IntGauge,
) -> anyhow::Result<()> {
    let grace = limits.grace;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // Fired when the grace period is over: connections still open are dropped here, not left
    // to whoever owns the runtime (an embedding test's runtime outlives `serve`).
    let cut_off = CancellationToken::new();

    loop {
        // At the cap, stop accepting: new connections wait in the kernel's backlog.
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Usually EMFILE under overload: back off instead of spinning or exiting.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        let cut_off = cut_off.clone();
        let open = OpenConnection::new(&connections, slot);
        tokio::spawn(async move {
            let _open = open;
            tokio::select! {
                result = conn => if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                },
                () = cut_off.cancelled() => {
                    tracing::warn!(%peer, "connection dropped at the end of the grace period");
                }
            }
        });
    }

    drop(listener);
    tracing::info!(
        ?grace,
        "shutting down: no new connections, waiting for in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over; dropping remaining connections");
            cut_off.cancel();
        }
    }
    Ok(())
}

/// Holds a connection's slot under the cap and counts it in the gauge until dropped.
struct OpenConnection {
    gauge: IntGauge,
    _slot: OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(gauge: &IntGauge, slot: OwnedSemaphorePermit) -> Self {
        gauge.inc();
        Self {
            gauge: gauge.clone(),
            _slot: slot,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

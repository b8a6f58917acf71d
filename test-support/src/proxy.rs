//! A TCP proxy the tests put between a component and a real server to take the server "away"
//! for that component alone (the shared stack keeps serving the other tests): `down()` resets
//! every open connection and refuses new ones until `up()`, which is what a crashed server or a
//! cut link looks like to the client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

struct State {
    down: bool,
    /// Bytes are swallowed both ways and nothing is closed: a server gone without a word (a
    /// half-open connection after a failover, a dropped route).
    blackhole: bool,
    /// Added to every chunk's trip towards the server and towards the client.
    latency: [Duration; 2],
    /// Cancelled by `down()`: every connection opened since the last `up()` holds a child.
    connections: CancellationToken,
}

impl FaultProxy {
    /// Listens on 127.0.0.1, any port, forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        Self::start_on("127.0.0.1:0", upstream)
            .await
            .expect("a free loopback port")
    }

    /// Listens on `listen` (a fixed address, e.g. one a Kafka listener advertises), forwarding to
    /// `upstream`.
    pub async fn start_on(listen: &str, upstream: &str) -> std::io::Result<FaultProxy> {
        let upstream = upstream.to_owned();
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            down: false,
            blackhole: false,
            latency: [Duration::ZERO; 2],
            connections: CancellationToken::new(),
        }));
        let stop = CancellationToken::new();
        let (st, halt) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = halt.cancelled() => return,
                };
                let token = {
                    let s = st.lock().unwrap();
                    if s.down {
                        drop(client); // refused: closed at once
                        continue;
                    }
                    s.connections.child_token()
                };
                tokio::spawn(pipe(client, upstream.clone(), token, st.clone()));
            }
        });
        Ok(FaultProxy { addr, state, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets the open connections and refuses new ones.
    pub fn down(&self) {
        let mut s = self.state.lock().unwrap();
        s.down = true;
        s.connections.cancel();
    }

    /// Swallows every byte both ways from now on, closing nothing. The bytes are gone for good:
    /// after `up()` the old connections are garbage, as after a failover to a new server.
    pub fn blackhole(&self) {
        self.state.lock().unwrap().blackhole = true;
    }

    /// Resets every open connection now and keeps accepting new ones (a flapping link, a NAT or
    /// load balancer dropping flows).
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.connections.cancel();
        s.connections = CancellationToken::new();
    }

    /// Ends `down()` and `blackhole()`.
    pub fn up(&self) {
        let mut s = self.state.lock().unwrap();
        s.down = false;
        s.blackhole = false;
        s.connections = CancellationToken::new();
    }

    /// Delays every chunk by `to_server` on its way to the server and by `to_client` on its way
    /// back (a slow link, not a slow pipe: chunks in flight overlap). Zero turns it off.
    pub fn set_latency(&self, to_server: Duration, to_client: Duration) {
        self.state.lock().unwrap().latency = [to_server, to_client];
    }

    /// `url` with its `host:port` replaced by this proxy's address.
    pub fn rewrite_url(&self, url: &str) -> String {
        url.replacen(url_addr(url), &self.addr.to_string(), 1)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.state.lock().unwrap().connections.cancel();
    }
}

/// The `host:port` of a URL such as `postgres://user@127.0.0.1:5432/db`.
pub fn url_addr(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostpath = rest.split('/').next().unwrap_or(rest);
    hostpath.rsplit_once('@').map_or(hostpath, |(_, h)| h)
}

async fn pipe(
    client: TcpStream,
    upstream: String,
    token: CancellationToken,
    state: Arc<Mutex<State>>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    // Transparent: a chunk goes out when it is due, not when Nagle's algorithm lets it (the
    // clients here set TCP_NODELAY themselves; without it a proxied Kafka produce waited for
    // delayed ACKs and the relays' outbox lag doubled before any fault).
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    // Handles to set SO_LINGER 0 at `down()`, so dropping the halves then resets the connection.
    let (Ok(client), Ok(server)) = (with_handle(client), with_handle(server)) else {
        return;
    };
    let ((client, client_handle), (server, server_handle)) = (client, server);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = async {
            tokio::join!(
                forward(client_read, server_write, state.clone(), 0),
                forward(server_read, client_write, state, 1),
            )
        } => {}
        _ = token.cancelled() => {
            // A reset, not a polite close: what a crashed server or a dropped link looks like.
            for handle in [&client_handle, &server_handle] {
                let _ = socket2::SockRef::from(handle).set_linger(Some(Duration::ZERO));
            }
        }
    }
}

/// The stream and a second handle on the same socket (for socket options after the split).
fn with_handle(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let handle = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, handle))
}

/// Copies one direction, each chunk held back by that direction's latency at the time it was
/// read. A reader task stamps chunks, the writer releases them when due, so latency does not
/// cap throughput.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: Arc<Mutex<State>>,
    direction: usize,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let (delay, swallow) = {
                        let s = state.lock().unwrap();
                        (s.latency[direction], s.blackhole)
                    };
                    if swallow {
                        continue;
                    }
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            // No latency set: no timer either (it would round up to the next millisecond).
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

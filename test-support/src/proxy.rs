//! A TCP proxy the tests put between a component and a real server to take the server "away"
//! for that component alone (the shared stack keeps serving the other tests): `down()` resets
//! every open connection and refuses new ones until `up()`, which is what a crashed server or a
//! cut link looks like to the client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

struct State {
    down: bool,
    /// Cancelled by `down()`: every connection opened since the last `up()` holds a child.
    connections: CancellationToken,
}

impl FaultProxy {
    /// Listens on 127.0.0.1, any port, forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            down: false,
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
                tokio::spawn(pipe(client, upstream.clone(), token));
            }
        });
        FaultProxy { addr, state, stop }
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

    pub fn up(&self) {
        let mut s = self.state.lock().unwrap();
        s.down = false;
        s.connections = CancellationToken::new();
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

async fn pipe(mut client: TcpStream, upstream: String, token: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = token.cancelled() => {
            // A reset, not a polite close: what a crashed server or a dropped link looks like.
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
    }
}

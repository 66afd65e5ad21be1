//! A TCP proxy that can black-hole its connections: bytes in both directions are read and
//! dropped, nothing is closed, new connections are accepted and treated the same. What a
//! network partition looks like to both ends (no RST, no FIN: just silence).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    cut: Arc<AtomicBool>,
    upstream: Arc<Mutex<String>>,
}

impl Proxy {
    /// Forwards to `target` (`http://host:port`).
    pub async fn start(target: &str) -> Proxy {
        let upstream = Arc::new(Mutex::new(target.trim_start_matches("http://").to_owned()));
        let to = upstream.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let target = to.lock().unwrap().clone();
                let Ok(up) = TcpStream::connect(&target).await else { continue };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pump(dr, uw, flag.clone()));
                tokio::spawn(pump(ur, dw, flag.clone()));
            }
        });
        Proxy { url, cut, upstream }
    }

    /// New connections go to `target` (a load balancer switching servers); open ones stay.
    pub fn retarget(&self, target: &str) {
        *self.upstream.lock().unwrap() = target.trim_start_matches("http://").to_owned();
    }

    /// From now on, nothing gets through (either way).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, cut: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            continue; // dropped on the floor
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

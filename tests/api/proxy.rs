//! A TCP proxy a test can cut, to take a service away from Conveyor (and give it back) without
//! stopping the service other tests share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    /// While set, nothing the service sends reaches its clients (what they send still reaches
    /// it): a reply lost on the way back.
    muted: Arc<AtomicBool>,
    /// Bumped on every cut, so that open connections end.
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let muted = Arc::new(AtomicBool::new(false));
        let (cuts, _) = watch::channel(0);
        let task = tokio::spawn(serve(
            listener,
            upstream.to_owned(),
            (up.clone(), muted.clone()),
            cuts.clone(),
        ));
        Proxy {
            port,
            up,
            muted,
            cuts,
            task,
        }
    }

    /// Drops every open connection and refuses new ones, as a service that went down.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Forwards again, as a service that came back.
    pub fn restore(&self) {
        self.muted.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }

    /// Lets requests through to the service but drops its answers, on open connections too.
    pub fn mute(&self) {
        self.muted.store(true, Ordering::SeqCst);
    }

    /// `url` with its `host:port` replaced by this proxy's.
    pub fn url(&self, url: &str, upstream: &str) -> String {
        url.replacen(upstream, &format!("127.0.0.1:{}", self.port), 1)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    upstream: String,
    (up, muted): (Arc<AtomicBool>, Arc<AtomicBool>),
    cuts: watch::Sender<u64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !up.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let upstream = upstream.clone();
        let mut cut = cuts.subscribe();
        let muted = muted.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let answers = async {
                let mut buffer = vec![0; 16 * 1024];
                loop {
                    let read = from_server.read(&mut buffer).await.unwrap_or(0);
                    if read == 0 {
                        return;
                    }
                    if !muted.load(Ordering::SeqCst)
                        && to_client.write_all(&buffer[..read]).await.is_err()
                    {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = tokio::io::copy(&mut from_client, &mut to_server) => {}
                _ = answers => {}
                _ = cut.changed() => {}
            }
        });
    }
}

#[tokio::test]
async fn forwards_both_ways_and_mutes_answers() {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = echo.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let mut asked = [0; 4];
                while socket.read_exact(&mut asked).await.is_ok() {
                    asked.reverse();
                    socket.write_all(&asked).await.unwrap();
                }
            });
        }
    });
    let proxy = Proxy::start(&address).await;
    let mut client = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    let mut answer = [0; 4];
    client.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"gnip");

    proxy.mute();
    client.write_all(b"pong").await.unwrap();
    let late = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        client.read_exact(&mut answer),
    )
    .await;
    assert!(late.is_err(), "a muted answer came through");
}

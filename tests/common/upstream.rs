//! Test upstreams: HTTP/1.1 servers on ephemeral loopback ports that echo
//! the request, and record every byte they receive.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What a test upstream does with each request.
#[derive(Clone)]
pub(crate) enum Behaviour {
    /// 200 with a body describing the request: `name`, method, path, then
    /// every header as `name: value`, one per line.
    Echo,
    /// Waits this long, then answers like Echo (a slow upstream is the
    /// behaviour under test).
    Delay(Duration),
    /// Accepts the connection and never answers.
    Stall,
    /// Like Echo, but requests whose path starts with `/hold` wait until the
    /// gate is opened (set to true).
    Gated(tokio::sync::watch::Receiver<bool>),
}

pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) name: String,
    /// Requests seen (Stall: request heads received; a connection that
    /// sends none, such as another test's port probe, is not one).
    pub(crate) hits: Arc<AtomicUsize>,
    /// Every byte read from every connection, in arrival order.
    received: Arc<Mutex<Vec<u8>>>,
    /// Connections accepted and not closed yet.
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stream that appends what it reads to a shared record.
struct Recording {
    inner: TcpStream,
    record: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.record
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(open: &Arc<AtomicUsize>) -> OpenGuard {
        open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(open.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(
    name: &str,
    hits: &AtomicUsize,
    behaviour: Behaviour,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
    match behaviour {
        Behaviour::Delay(d) => tokio::time::sleep(d).await,
        Behaviour::Gated(mut gate) if req.uri().path().starts_with("/hold") => {
            let _ = gate.wait_for(|open| *open).await;
        }
        _ => {}
    }
    let mut body = format!("{name}\n{} {}\n", req.method(), req.uri());
    for (k, v) in req.headers() {
        body.push_str(&format!(
            "{}: {}\n",
            k,
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    // A request body is read whole and summed up after the headers.
    let received = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !received.is_empty() {
        body.push_str(&format!(
            "received-body-bytes: {}\nreceived-body-tail: {}\n",
            received.len(),
            String::from_utf8_lossy(&received[received.len().saturating_sub(32)..])
        ));
    }
    Response::builder()
        .header("content-type", "text/plain")
        .header("x-upstream", name)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

impl Upstream {
    pub(crate) async fn start(name: &str, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let (n, h, rec, op) = (
            Arc::<str>::from(name),
            hits.clone(),
            received.clone(),
            open.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let guard = OpenGuard::new(&op);
                let (n, h, b) = (n.clone(), h.clone(), behaviour.clone());
                let stream = Recording {
                    inner: stream,
                    record: rec.clone(),
                };
                tokio::spawn(async move {
                    let _guard = guard;
                    if matches!(b, Behaviour::Stall) {
                        // Read the request head, then hold the connection
                        // open and answer nothing (until the upstream is
                        // dropped).
                        let (mut stream, mut head, mut buf) = (stream, Vec::new(), [0u8; 1024]);
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        h.fetch_add(1, Ordering::SeqCst);
                        let _keep = stream;
                        std::future::pending::<()>().await;
                        return;
                    }
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (n, h, b) = (n.clone(), h.clone(), b.clone());
                        async move { Ok::<_, Infallible>(answer(&n, &h, b, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            hits,
            received,
            open,
            task,
        }
    }

    pub(crate) fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Every byte received so far, all connections.
    pub(crate) fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// Connections accepted and not yet closed by either side.
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// An address nothing listens on (connections are refused).
pub(crate) fn dead_address() -> String {
    format!("127.0.0.1:{}", super::free_port())
}

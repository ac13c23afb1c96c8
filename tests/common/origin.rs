//! A scriptable origin for cache tests: what it answers is set per path
//! (+ query); it counts requests per path, keeps the last request headers
//! per path and the methods it saw, and answers conditional GETs against
//! the ETag it was given. By default: 200, `cache-control: max-age=60`,
//! body `<path> #<hit number>`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// What the origin answers for one path (+ query).
#[derive(Clone)]
pub(crate) struct Spec {
    pub(crate) status: u16,
    /// Sent as they are; `content-type: text/plain` is added unless given
    /// (an empty value means: no Content-Type at all).
    pub(crate) headers: Vec<(String, String)>,
    /// A body of this many `x` instead of `<path> #<n>`.
    pub(crate) body_size: Option<usize>,
    /// Wait this long before answering (a slow origin is the behaviour
    /// under test).
    pub(crate) delay: Duration,
}

impl Spec {
    /// `status` with these headers, the default body, no delay.
    pub(crate) fn new(status: u16, headers: &[(&str, &str)]) -> Spec {
        Spec {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body_size: None,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct OriginState {
    specs: HashMap<String, Spec>,
    hits: HashMap<String, usize>,
    /// Request headers of the last request per path.
    last: HashMap<String, http::HeaderMap>,
    methods: Vec<String>,
}

pub(crate) struct Origin {
    addr: SocketAddr,
    state: Arc<Mutex<OriginState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    pub(crate) async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(OriginState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(answer(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin { addr, state, task }
    }

    /// Answer `path` with `status` and these headers from now on.
    pub(crate) fn set(&self, path: &str, status: u16, headers: &[(&str, &str)]) {
        self.set_spec(path, Spec::new(status, headers));
    }

    pub(crate) fn set_spec(&self, path: &str, spec: Spec) {
        self.state
            .lock()
            .unwrap()
            .specs
            .insert(path.to_string(), spec);
    }

    /// Requests seen for `path` (+ query).
    pub(crate) fn hits(&self, path: &str) -> usize {
        *self.state.lock().unwrap().hits.get(path).unwrap_or(&0)
    }

    pub(crate) fn last_headers(&self, path: &str) -> http::HeaderMap {
        self.state
            .lock()
            .unwrap()
            .last
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// The methods of every request seen, in order.
    pub(crate) fn methods(&self) -> Vec<String> {
        self.state.lock().unwrap().methods.clone()
    }

    pub(crate) fn address(&self) -> String {
        self.addr.to_string()
    }
}

async fn answer(st: &Mutex<OriginState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let (spec, n) = {
        let mut s = st.lock().unwrap();
        s.methods.push(req.method().to_string());
        let n = {
            let h = s.hits.entry(pq.clone()).or_default();
            *h += 1;
            *h
        };
        s.last.insert(pq.clone(), req.headers().clone());
        let spec = s
            .specs
            .get(&pq)
            .cloned()
            .unwrap_or_else(|| Spec::new(200, &[("cache-control", "max-age=60")]));
        (spec, n)
    };
    if !spec.delay.is_zero() {
        tokio::time::sleep(spec.delay).await;
    }
    let mut b = Response::builder();
    let mut status = spec.status;
    // Conditional GET against the spec's ETag.
    let etag = spec
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.clone());
    let inm = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    let not_modified = etag.is_some() && inm == etag.as_deref();
    if not_modified {
        status = 304;
    }
    let mut has_ct = false;
    for (k, v) in &spec.headers {
        if k.eq_ignore_ascii_case("content-type") {
            has_ct = true;
            if v.is_empty() {
                continue;
            }
        }
        b = b.header(k.as_str(), v.as_str());
    }
    if !has_ct && !not_modified {
        b = b.header("content-type", "text/plain");
    }
    let body = if not_modified {
        String::new()
    } else {
        match spec.body_size {
            Some(size) => "x".repeat(size),
            None => format!("{pq} #{n}"),
        }
    };
    b.status(status).body(Full::new(Bytes::from(body))).unwrap()
}

//! The test client: one request per new connection, HTTP/1.1 or h2c.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use tokio::net::TcpStream;

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
    pub(crate) version: http::Version,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request headers the Echo upstream saw, lowercased names.
    pub(crate) fn echoed_headers(&self) -> HashMap<String, Vec<String>> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for line in self.body.lines().skip(2) {
            if let Some((k, v)) = line.split_once(": ") {
                map.entry(k.to_ascii_lowercase())
                    .or_default()
                    .push(v.to_string());
            }
        }
        map
    }

    /// The upstream name an Echo upstream put first.
    pub(crate) fn upstream_name(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }
}

/// One request on a new HTTP/1.1 connection.
pub(crate) async fn request(
    port: u16,
    method: &str,
    host: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    Connection::open(port)
        .await?
        .request(method, host, path, headers)
        .await
}

/// One HTTP/1.1 connection for several requests in turn (keep-alive); a
/// request fails if edgeward closed the connection after the previous one.
pub(crate) struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub(crate) async fn open(port: u16) -> Result<Connection, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Connection { sender })
    }

    pub(crate) async fn request(
        &mut self,
        method: &str,
        host: Option<&str>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
        send(&mut self.sender, req).await
    }
}

async fn send<S>(sender: &mut S, req: Request<Full<Bytes>>) -> Result<Reply, String>
where
    S: SendRequest,
{
    let resp = sender.send(req).await?;
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        version,
    })
}

trait SendRequest {
    fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> impl std::future::Future<Output = Result<Response<Incoming>, String>>;
}

impl SendRequest for hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        // After a response, hyper's connection takes a moment to be ready
        // for the next request; sent before that, a request is refused
        // ("operation was canceled") without reaching the wire.
        self.ready().await.map_err(|e| format!("ready: {e}"))?;
        self.send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))
    }
}

impl SendRequest for hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        self.send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))
    }
}

pub(crate) async fn get(port: u16, host: &str, path: &str) -> Result<Reply, String> {
    request(port, "GET", Some(host), path, &[]).await
}

/// One GET over HTTP/2 cleartext with prior knowledge; the host goes in
/// `:authority`.
pub(crate) async fn get_h2c(port: u16, host: &str, path: &str) -> Result<Reply, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://{host}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&mut sender, req).await
}

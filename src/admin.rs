//! The admin listener: `GET /metrics` (Prometheus text format) and
//! `GET /health`. Bound only to `admin.listen`, never to the public listeners.

use crate::live::Live;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_prometheus::prometheus::{Encoder, TextEncoder};
use std::sync::Arc;

pub(crate) struct AdminApp {
    live: Arc<Live>,
}

impl AdminApp {
    pub(crate) fn new(live: Arc<Live>) -> AdminApp {
        AdminApp { live }
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                b"only GET\n".to_vec(),
            );
        }
        match req.uri.path() {
            "/metrics" => {
                let encoder = TextEncoder::new();
                let mut buf = Vec::with_capacity(16 * 1024);
                if let Err(e) = encoder.encode(&pingora_prometheus::prometheus::gather(), &mut buf)
                {
                    return reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain; charset=utf-8",
                        format!("cannot encode metrics: {e}\n").into_bytes(),
                    );
                }
                reply(StatusCode::OK, encoder.format_type(), buf)
            }
            "/health" => {
                let cfg = self.live.snapshot();
                reply(
                    StatusCode::OK,
                    "application/json",
                    format!(
                        "{{\"status\":\"ok\",\"version\":\"{}\",\"sites\":{}}}\n",
                        env!("CARGO_PKG_VERSION"),
                        cfg.sites.len()
                    )
                    .into_bytes(),
                )
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                b"not found; try /metrics or /health\n".to_vec(),
            ),
        }
    }
}

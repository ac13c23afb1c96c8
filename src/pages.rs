//! Short HTML pages edgeward answers with itself (unknown host, upstream
//! errors). They show the request id, so a user can quote it to support.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// One of edgeward's own answers: the status, the sentence shown on the
/// page (edgeward's own text, never client input), extra header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) detail: &'static str,
    pub(crate) extra: Vec<(&'static str, String)>,
}

impl Page {
    pub(crate) fn new(status: u16, detail: &'static str) -> Page {
        Page {
            status,
            detail,
            extra: Vec::new(),
        }
    }

    /// The page with one more header field (e.g. `Retry-After`).
    pub(crate) fn with(mut self, name: &'static str, value: String) -> Page {
        self.extra.push((name, value));
        self
    }

    /// Send it as the response to `session`.
    pub(crate) async fn send(&self, session: &mut Session, request_id: &str) -> Result<()> {
        respond_with(session, self.status, self.detail, request_id, &self.extra).await
    }

    /// Send it on a bare HTTP session, before any phase ran (a request
    /// Pingora's reader refused; its head may not even be parsed). The
    /// connection is closed after it.
    pub(crate) async fn send_refusal(
        &self,
        session: &mut ServerSession,
        request_id: &str,
    ) -> Result<()> {
        let body = body(self.status, self.detail, request_id);
        let resp = header(
            self.status,
            "text/html; charset=utf-8",
            body.len(),
            request_id,
            &self.extra,
        )?;
        session.set_keepalive(None);
        session.write_response_header(Box::new(resp)).await?;
        session.write_response_body(body, true).await
    }
}

/// The page body. `detail` is edgeward's own text, never client input.
fn body(status: u16, detail: &str, request_id: &str) -> Bytes {
    let title = format!("{status} {}", reason(status));
    Bytes::from(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{detail}</p><p>Request id: <code>{request_id}</code></p>\
         <hr><p>edgeward</p></body></html>\n"
    ))
}

/// Send a complete page as the response to `session`.
pub(crate) async fn respond(
    session: &mut Session,
    status: u16,
    detail: &str,
    request_id: &str,
) -> Result<()> {
    respond_with(session, status, detail, request_id, &[]).await
}

/// Like `respond`, with extra headers (e.g. `Retry-After`).
pub(crate) async fn respond_with(
    session: &mut Session,
    status: u16,
    detail: &str,
    request_id: &str,
    extra: &[(&'static str, String)],
) -> Result<()> {
    let body = body(status, detail, request_id);
    let html = "text/html; charset=utf-8";
    send(session, status, html, body, request_id, extra).await
}

/// Send a plain-text answer (for machine clients, e.g. PURGE).
pub(crate) async fn respond_text(
    session: &mut Session,
    status: u16,
    text: &str,
    request_id: &str,
) -> Result<()> {
    let body = Bytes::copy_from_slice(text.as_bytes());
    let text = "text/plain; charset=utf-8";
    send(session, status, text, body, request_id, &[]).await
}

async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    request_id: &str,
    extra: &[(&'static str, String)],
) -> Result<()> {
    let resp = header(status, content_type, body.len(), request_id, extra)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

fn header(
    status: u16,
    content_type: &str,
    len: usize,
    request_id: &str,
    extra: &[(&'static str, String)],
) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(status, Some(5 + extra.len()))?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    for (k, v) in extra {
        resp.insert_header(*k, v)?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, len.to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(&crate::request_id::NAME, request_id)?;
    Ok(resp)
}

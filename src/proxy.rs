//! The one `ProxyHttp` implementation: the list of phases. Each phase is
//! one call into the module that owns it (`request`, `cache`, `waf`,
//! `supervisor`, `upstream`, `logs`, `pages`); the hook contracts are
//! Pingora's (`pingora-proxy/src/proxy_trait.rs`).

use crate::live::{InFlight, Live};
use crate::pages::Page;
use crate::sites::{Config, Site};
use crate::upstream::UpstreamTarget;
use crate::{cache, limits, logs, metrics, request, request_id, supervisor, tls, upstream, waf};
use async_trait::async_trait;
use log::warn;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub(crate) struct EdgeProxy {
    live: Arc<Live>,
}

impl EdgeProxy {
    pub(crate) fn new(live: Arc<Live>) -> EdgeProxy {
        EdgeProxy { live }
    }
}

/// Per-request state. `config` is the snapshot the request keeps to its end.
pub(crate) struct RequestCtx {
    config: Arc<Config>,
    site: Option<Arc<Site>>,
    request_id: String,
    /// Normalized host the request was routed by.
    host: Option<String>,
    peer_ip: Option<IpAddr>,
    /// The client as defined for logs and the WAF (see `request::client_ip`).
    client_ip: Option<IpAddr>,
    started_at: SystemTime,
    started: Instant,
    upstream_started: Option<Instant>,
    /// Attempts at the upstream for this request (a retry is the second).
    upstream_attempts: u8,
    /// The last attempt failed (Pingora then closes the client connection
    /// after whatever it answers, e.g. a stale entry).
    upstream_failed: bool,
    /// Hold on the site's running program (supervised upstreams).
    lease: Option<supervisor::Lease>,
    /// Status of a response edgeward generated itself (error pages).
    own_status: u16,
    /// The HTTP cache's state for this request.
    cache: cache::CacheCtx,
    /// The WAF's inspection of this request (None: not inspected).
    waf: Option<waf::Inspection>,
    /// Set when the WAF stopped the request in its body phase.
    waf_status: u16,
    /// The TLS version of the client connection (None: plain HTTP).
    tls_version: Option<Cow<'static, str>>,
    /// The request body against its size limit.
    body: limits::BodyCount,
    /// The body went over the limit (fail_to_proxy answers 413).
    body_refused: bool,
    _in_flight: InFlight,
}

impl RequestCtx {
    /// Answer with one of edgeward's own pages; `request_filter` is done.
    async fn answer(&mut self, session: &mut Session, page: Page) -> Result<bool> {
        self.own_status = page.status;
        page.send(session, &self.request_id).await?;
        Ok(true)
    }
}

fn protocol_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "-",
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            config: self.live.snapshot(),
            site: None,
            request_id: String::new(),
            host: None,
            peer_ip: None,
            client_ip: None,
            started_at: SystemTime::now(),
            started: Instant::now(),
            upstream_started: None,
            upstream_attempts: 0,
            upstream_failed: false,
            lease: None,
            own_status: 0,
            cache: cache::CacheCtx::default(),
            waf: None,
            waf_status: 0,
            tls_version: None,
            body: limits::BodyCount::default(),
            body_refused: false,
            _in_flight: InFlight::enter(),
        }
    }

    /// No downstream modules: Pingora's default adds a (disabled) response
    /// compression module that every request would still pass through.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// HTTP/1.1 pipelining: requests sent before the previous answer are
    /// answered in order instead of the connection being closed after the
    /// first (the setting stays on for the connection's next requests).
    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        session.set_pipelining_enabled(true);
        Ok(())
    }

    /// Before a request head is read: the header and body timeouts, the
    /// largest head, the keep-alive timeout (`limits:`).
    fn downstream_session_start(&self, session: &mut ServerSession) {
        self.live.snapshot().limits.start_session(session);
    }

    /// A request refused before any other phase (unparsable, slow or too
    /// large head, CONNECT): edgeward's page, the global access log.
    async fn request_refused(&self, session: &mut ServerSession, e: &Error) {
        let config = self.live.snapshot();
        limits::refused::answer(session, e, config.access_log.as_ref()).await;
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let length_and_coding = session
            .as_downstream()
            .had_content_length_with_transfer_encoding();
        let req = session.req_header();
        ctx.request_id = request_id::for_request(
            req.headers
                .get(request_id::NAME.name())
                .map(|v| v.as_bytes()),
        );
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let front = match request::front(req, length_and_coding, peer, &ctx.config.trusted_proxies)
        {
            Ok(front) => front,
            Err(why) => {
                // A malformed request: not worth keeping the connection.
                session.set_keepalive(None);
                let page = Page::new(why.status(), why.message());
                return ctx.answer(session, page).await;
            }
        };
        (ctx.host, ctx.peer_ip, ctx.client_ip) = (front.host, front.peer_ip, front.client_ip);
        ctx.tls_version = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .map(|t| t.version.clone());
        ctx.cache = cache::CacheCtx::new(ctx.tls_version.is_some());
        let Some(site) = ctx.config.site_for_host(ctx.host.as_deref()).cloned() else {
            let page = Page::new(404, "No site is configured for this host name.");
            return ctx.answer(session, page).await;
        };
        ctx.site = Some(site.clone());
        let host = ctx.host.as_deref();
        if let Some(status) =
            tls::acme::answer_challenge(session, site.tls.acme, host, &ctx.request_id).await?
        {
            ctx.own_status = status;
            return Ok(true);
        }
        let body_limit = site
            .max_body_size
            .unwrap_or(ctx.config.limits.max_body_size);
        ctx.body = match limits::BodyCount::start(session.req_header(), body_limit) {
            Ok(count) => count,
            Err(page) => {
                // The body is not read: the connection cannot be reused.
                session.set_keepalive(None);
                return ctx.answer(session, page).await;
            }
        };
        if cache::is_purge(session) {
            let host = ctx.host.as_deref();
            ctx.own_status = cache::purge(
                session,
                &ctx.config.cache,
                &site.cache,
                host,
                &ctx.request_id,
            )
            .await?;
            return Ok(true);
        }
        if site.tls.https_redirect
            && ctx.tls_version.is_none()
            && tls::redirect_ready(&site.tls, ctx.host.as_deref())
        {
            let page = tls::redirect(
                session.req_header(),
                ctx.host.as_deref(),
                ctx.config.https_port(),
            );
            return ctx.answer(session, page).await;
        }
        if let Some(w) = &site.waf
            && let Some((inspection, decision)) = waf::Inspection::start(
                w,
                session,
                &ctx.request_id,
                ctx.client_ip,
                ctx.tls_version.is_some(),
            )
            .await
        {
            ctx.waf = Some(inspection);
            if let Some(status) = decision.stop() {
                return ctx.answer(session, waf::block_page(status)).await;
            }
        }
        let (cache, host) = (&ctx.config.cache, ctx.host.as_deref());
        if cache::serve_fresh_hit(
            session,
            cache,
            &site.cache,
            host,
            &ctx.request_id,
            site.access_log
                .as_ref()
                .map_or(&[], |l| l.response_fields()),
            &mut ctx.cache,
        )
        .await?
        {
            return Ok(true);
        }
        if let UpstreamTarget::Program(spec) = &site.upstream.target {
            match supervisor::SUPERVISOR
                .lease(&site.id, &site.sites_log, spec)
                .await
            {
                Ok(lease) => ctx.lease = Some(lease),
                Err(e) => return ctx.answer(session, e.page()).await,
            }
        }
        Ok(false)
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let site = ctx.site.as_deref().map(|s| &s.cache);
        cache::request_cache_filter(
            session,
            &ctx.config.cache,
            site,
            ctx.host.as_deref(),
            &mut ctx.cache,
        );
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        let site = ctx.site.as_deref().map(|s| &s.cache);
        cache::cache_key(session, site, ctx.host.as_deref(), &mut ctx.cache)
    }

    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(cache::hit_filter(meta, is_fresh, &mut ctx.cache))
    }

    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let go = cache::proxy_upstream_filter(session, &mut ctx.cache, &ctx.request_id).await?;
        if !go {
            ctx.own_status = 504;
        }
        Ok(go)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        let site = ctx.site.as_deref().map(|s| &s.cache);
        Ok(cache::response_cache_filter(
            session,
            resp,
            site,
            &mut ctx.cache,
        ))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        cache::vary_filter(meta, req)
    }

    fn should_serve_stale(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        cache::should_serve_stale(session, &ctx.cache, error)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body
            && !ctx.body.add(chunk.len())
        {
            // fail_to_proxy answers with the 413 page.
            ctx.body_refused = true;
            return Error::e_explain(ErrorType::HTTPStatus(413), "limits.max_body_size");
        }
        if let Some(inspection) = ctx.waf.as_mut()
            && let Some(status) = inspection.body(body, end_of_stream).await.stop()
        {
            // fail_to_proxy answers with the block page.
            ctx.waf_status = status;
            return Error::e_explain(ErrorType::HTTPStatus(status), "stopped by the WAF");
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(site) = &ctx.site else {
            return Error::e_explain(ErrorType::InternalError, "no site chosen");
        };
        ctx.upstream_started = Some(Instant::now());
        ctx.upstream_attempts = ctx.upstream_attempts.saturating_add(1);
        ctx.upstream_failed = false;
        let mut peer = upstream::peer(&site.upstream, ctx.lease.as_ref().map(|l| l.addr()))?;
        if ctx.upstream_attempts > 1 {
            upstream::fresh_connection(&mut peer);
        }
        Ok(peer)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        ctx.upstream_failed = true;
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        upstream::retry_decision(e, peer, replayable, ctx.upstream_attempts, client_reused)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.upstream_failed = true;
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // X-Forwarded-For: append the socket peer to what the client sent.
        if let Some(peer) = ctx.peer_ip {
            let sent = req.headers.get_all(request::X_FORWARDED_FOR.name());
            let xff = request::forwarded_for(sent.iter().map(|v| v.as_bytes()), peer);
            req.insert_header(&request::X_FORWARDED_FOR, xff)?;
        }
        let proto = if ctx.tls_version.is_some() {
            http::HeaderValue::from_static("https")
        } else {
            http::HeaderValue::from_static("http")
        };
        // Names as `HeaderName`s: inserting by `&str` parses the name again.
        req.insert_header(&request::X_FORWARDED_PROTO, proto)?;
        req.insert_header(&request_id::NAME, &ctx.request_id)?;
        // HTTP/2 clients send :authority only; an HTTP/1.1 upstream needs Host.
        if !req.headers.contains_key(http::header::HOST)
            && let Some(a) = req.uri.authority().map(|a| a.as_str().to_string())
        {
            req.insert_header(http::header::HOST, a)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream::check_response(
            resp.status.as_u16(),
            session.as_downstream().is_upgrade_req(),
        )?;
        cache::upstream_response_filter(resp, &mut ctx.cache);
        if let (Some(site), Some(t0)) = (&ctx.site, ctx.upstream_started.take()) {
            site.metrics
                .upstream_seconds
                .observe(t0.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let site = ctx.site.as_deref().map(|s| &s.cache);
        cache::response_filter(
            session,
            resp,
            &ctx.config.cache,
            site,
            ctx.host.as_deref(),
            &ctx.cache,
        )
        .await?;
        resp.insert_header(&request_id::NAME, &ctx.request_id)?;
        if let (Some(site), Some(_)) = (&ctx.site, &ctx.tls_version) {
            tls::strict_transport_security(&site.tls, resp)?;
        }
        if ctx.upstream_failed {
            // A stale entry served because the upstream failed: Pingora
            // closes the connection after it, so the response must say so
            // (a client reusing it would see its next request fail).
            session.set_keepalive(None);
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // The connection is not reused after this (can_reuse_downstream is
        // false below): say so in the page, or a client that reuses it at once
        // sees its next request fail.
        session.set_keepalive(None);
        if ctx.waf_status > 0 {
            let status = ctx.waf_status;
            ctx.own_status = status;
            if session.response_written().is_none()
                && let Err(err) = waf::block_page(status).send(session, &ctx.request_id).await
            {
                warn!("could not send the WAF's {status} page: {err}");
            }
            return FailToProxy {
                error_code: status,
                can_reuse_downstream: false,
            };
        }
        if ctx.body_refused {
            let page = limits::too_large();
            ctx.own_status = page.status;
            if session.response_written().is_none()
                && let Err(err) = page.send(session, &ctx.request_id).await
            {
                warn!("could not send the 413 page: {err}");
            }
            return FailToProxy {
                error_code: page.status,
                can_reuse_downstream: false,
            };
        }
        let failure = upstream::classify(e);
        let site = ctx.site.as_ref().map_or("-", |s| s.id.as_str());
        if matches!(e.esource(), ErrorSource::Upstream) || failure.status >= 500 {
            let target = ctx
                .site
                .as_ref()
                .map(|s| s.upstream.target.to_string())
                .unwrap_or_default();
            warn!(
                "site {site}: upstream {target} failed ({}): {} [request {}] -> {}",
                failure.cause.as_str(),
                e.root_cause(),
                ctx.request_id,
                failure.status
            );
            metrics::UPSTREAM_ERRORS
                .with_label_values(&[site, failure.cause.as_str()])
                .inc();
            if let (Some(s), Some(msg)) = (&ctx.site, failure.cause.sites_log_message()) {
                s.sites_log.write(&format!(
                    "{msg} ({target}): {} [request {}]",
                    e.root_cause(),
                    ctx.request_id
                ));
            }
        }
        if ctx.request_id.is_empty() {
            ctx.request_id = request_id::generate();
        }
        let mut status = failure.status;
        if status > 0
            && session.response_written().is_none()
            && let Err(err) = Page::new(status, failure.page)
                .send(session, &ctx.request_id)
                .await
        {
            warn!("site {site}: could not send the {status} page: {err}");
            status = 0;
        }
        ctx.own_status = status;
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        if ctx.waf_status > 0 || ctx.body_refused {
            // A WAF stop or a body over the limit is not a proxy error.
            return true;
        }
        // Upstream failures are logged by fail_to_proxy with the site and
        // cause; a client that went away is not an error of ours.
        matches!(e.esource(), ErrorSource::Upstream)
            || matches!(
                upstream::classify(e).cause,
                upstream::Cause::Client | upstream::Cause::ClientTimeout
            )
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(inspection) = ctx.waf.as_mut() {
            inspection.finish();
        }
        let resp = session.response_written();
        let status = resp.map_or(ctx.own_status, |r| r.status.as_u16());
        let (access_log, site_id) = match &ctx.site {
            Some(site) => {
                site.metrics.count(status);
                (site.access_log.as_ref(), site.id.as_str())
            }
            None => {
                // Refused before routing, or no site for the host: the
                // global access log, so operators see it.
                metrics::UNMATCHED.count(status);
                (ctx.config.access_log.as_ref(), "-")
            }
        };
        if let Some(access_log) = access_log {
            let req = session.req_header();
            access_log.log(&logs::Record {
                method: req.method.as_str().as_bytes(),
                raw_path: req.raw_path(),
                request_protocol: protocol_name(req.version),
                request_headers: Some(&req.headers),
                response_headers: resp.map(|r| &r.headers),
                status,
                peer_ip: ctx.peer_ip,
                client_ip: ctx.client_ip,
                host: ctx.host.as_deref(),
                request_id: &ctx.request_id,
                site: site_id,
                scheme: match (session.was_upgraded(), ctx.tls_version.is_some()) {
                    (false, false) => "http",
                    (false, true) => "https",
                    (true, false) => "ws",
                    (true, true) => "wss",
                },
                ssl_version: ctx.tls_version.as_deref(),
                started: ctx.started_at,
                completed: SystemTime::now(),
                duration: ctx.started.elapsed(),
                body_bytes: session.body_bytes_sent() as u64,
            });
        }
    }
}

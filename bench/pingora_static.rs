//! The reference point of `bench/cache.sh`: the fastest any Pingora
//! `ProxyHttp` can answer a request, measured beside edgeward. It answers
//! every request for `/obj<N>k.txt` from `request_filter` with a response
//! built at start-up (the headers of a cache hit, N KiB of `x`), so it pays
//! only Pingora's own per-request work: HTTP/1 parsing, the session, the
//! response header serialisation and the socket. Built like edgeward: the
//! same allocator (mimalloc through edgeward::alloc) and listener settings (h2c, 4 KiB client write
//! buffer, no downstream modules).
//!
//! Usage: pingora-static ADDR THREADS SIZE_KIB...

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::HttpServerOptions;
use pingora::http::ResponseHeader;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::collections::HashMap;

#[global_allocator]
static GLOBAL: edgeward::alloc::Allocator = edgeward::alloc::Allocator;

struct Static {
    objects: HashMap<String, (ResponseHeader, Bytes)>,
}

#[async_trait]
impl ProxyHttp for Static {
    type CTX = ();

    fn new_ctx(&self) {}

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Error::e_explain(ErrorType::InternalError, "pingora-static has no upstream")
    }

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        let Some((header, body)) = self.objects.get(session.req_header().uri.path()) else {
            session.respond_error(404).await?;
            return Ok(true);
        };
        let head = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(header.clone()), head)
            .await?;
        if !head {
            session
                .write_response_body(Some(body.clone()), true)
                .await?;
        }
        Ok(true)
    }
}

fn usage() -> ! {
    eprintln!("usage: pingora-static ADDR THREADS SIZE_KIB...");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        usage();
    }
    let addr = args[0].clone();
    let threads: usize = args[1].parse().unwrap_or_else(|_| usage());
    let mut objects = HashMap::new();
    for s in &args[2..] {
        let kib: usize = s.parse().unwrap_or_else(|_| usage());
        let len = kib * 1024;
        let mut h = ResponseHeader::build(200, Some(10)).expect("status 200");
        for (name, value) in [
            ("server", "nginx/1.22.1".to_string()),
            ("content-type", "text/plain".to_string()),
            ("content-length", len.to_string()),
            ("last-modified", "Sat, 21 Nov 2026 18:56:21 GMT".to_string()),
            ("accept-ranges", "bytes".to_string()),
            ("etag", format!("\"6b01e955-{len:x}\"")),
            ("cache-control", "max-age=3600".to_string()),
            ("age", "0".to_string()),
            ("cache-status", "pingora-static; hit".to_string()),
            (
                "x-request-id",
                "ba08e173e95454230000000000000001".to_string(),
            ),
        ] {
            h.append_header(name, value).expect("valid header");
        }
        objects.insert(format!("/obj{kib}k.txt"), (h, Bytes::from(vec![b'x'; len])));
    }
    let conf = ServerConf {
        threads,
        // As edgeward: a current-thread runtime per worker (src/server.rs).
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, Static { objects });
    if let Some(app) = service.app_logic_mut() {
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    service.add_listener(
        ListenerConfig::tcp(&addr).l4_buffer(L4BufferSettings::default().write(4 * 1024)),
    );
    server.add_service(service);
    server.run_forever();
}

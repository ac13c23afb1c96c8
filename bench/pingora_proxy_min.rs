//! The reference point of `bench/cost.sh` and `bench/proxy.sh`: the smallest
//! Pingora reverse proxy, only `upstream_peer` (every request to one origin,
//! over Pingora's upstream connection pool). It is built like edgeward
//! (mimalloc through edgeward::alloc, the same listener settings: h2c, 4 KiB client write buffer,
//! no downstream modules), so edgeward minus this is the cost of edgeward's
//! own hooks, and this minus `pingora-static` the cost of Pingora's upstream
//! side.
//!
//! Usage: pingora-proxy-min ADDR THREADS UPSTREAM_ADDR

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

#[global_allocator]
static GLOBAL: edgeward::alloc::Allocator = edgeward::alloc::Allocator;

struct Min {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Min {
    type CTX = ();

    fn new_ctx(&self) {}

    // As edgeward: no downstream modules (Pingora's default adds a disabled
    // compression module every request would pass through).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn usage() -> ! {
    eprintln!("usage: pingora-proxy-min ADDR THREADS UPSTREAM_ADDR");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        usage();
    }
    let threads: usize = args[1].parse().unwrap_or_else(|_| usage());
    let upstream: SocketAddr = args[2].parse().unwrap_or_else(|_| usage());
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
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, Min { upstream });
    if let Some(app) = service.app_logic_mut() {
        let mut opts = HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    service.add_listener(
        ListenerConfig::tcp(&args[0]).l4_buffer(L4BufferSettings::default().write(4 * 1024)),
    );
    server.add_service(service);
    server.run_forever();
}

//! Test harness: the real `edgeward` binary (server.rs) on a configuration
//! written with one builder (conf.rs), real upstream HTTP servers on
//! ephemeral loopback ports (upstream.rs; origin.rs, scriptable, for the
//! cache), a real redis-server (redis_server.rs), a real HTTP client
//! (client.rs); for the framing suite, raw bytes (raw.rs) and upstreams
//! that parse and record every request themselves (recording.rs). Waiting
//! is always polling with a deadline, never a bare sleep.
// Each test file is its own crate and uses only part of the harness.
#![allow(dead_code, unused_imports)]

mod client;
mod conf;
mod origin;
mod raw;
mod recording;

mod pebble;
mod redis_server;
mod server;
mod tls;
mod upstream;

pub(crate) use client::*;
pub(crate) use conf::*;
pub(crate) use origin::*;
pub(crate) use raw::*;
pub(crate) use recording::*;

pub(crate) use pebble::*;
pub(crate) use redis_server::*;
pub(crate) use server::*;
pub(crate) use tls::*;
pub(crate) use upstream::*;

use std::net::TcpListener as StdListener;
use std::time::{Duration, Instant};

pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// Poll `f` until it returns Some, or panic with `what` after `deadline`
/// (pauses between tries grow from 5 ms to 100 ms).
pub(crate) async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A free loopback port (bound, then released for the process under test).
pub(crate) fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// A free loopback port for a server that must keep that port when edgeward
/// is restarted on fresh ports (an ACME CA's HTTP-01 target). It is taken
/// below the kernel's ephemeral range (32768-60999 by default), so no
/// outgoing connection of a test running alongside can hold it as its
/// local port meanwhile, as one did once (`Address already in use` five
/// times over).
pub(crate) fn fixed_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..1000 {
        let n = seed.wrapping_add(NEXT.fetch_add(7919, Ordering::Relaxed));
        let port = 20000 + (n % 12000) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000-31999");
}

/// `N` different free loopback ports: all bound at once, then released
/// (one at a time, the kernel may hand out the same port twice).
pub(crate) fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<StdListener> = (0..N)
        .map(|_| StdListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("bound address").port())
}

//! Cost of rendering one access-log line, per format preset.
//!
//! Every request that reaches a site with an access log renders one line on
//! the request thread (`AccessLog::log`), so this is on the hot path. Goal:
//! < 500 ns per `standard` line.
//!
//! The output buffer is reused (cleared before each render), so the numbers
//! are rendering only, without the allocation of the line buffer.
//!
//! Run: `cargo bench --bench log_render` (see bench/README.md).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edgeward::logs::{Format, Record};
use http::HeaderMap;
use http::header::{ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, HOST, REFERER, USER_AGENT};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, UNIX_EPOCH};

/// A typical browser user agent (~70 characters).
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(HOST, "blog.example.com".parse().unwrap());
    h.insert(USER_AGENT, UA.parse().unwrap());
    h.insert(REFERER, "https://blog.example.com/".parse().unwrap());
    h.insert(
        ACCEPT,
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
            .parse()
            .unwrap(),
    );
    h.insert(ACCEPT_LANGUAGE, "en-US,en;q=0.5".parse().unwrap());
    h.insert(ACCEPT_ENCODING, "gzip, deflate, br".parse().unwrap());
    h.insert(
        "x-request-id",
        "01HQ3Z8X7K4M2N5P6R7S8T9V0W".parse().unwrap(),
    );
    h
}

fn response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", "text/html; charset=utf-8".parse().unwrap());
    h.insert("content-length", "16634".parse().unwrap());
    h
}

fn record<'a>(req: &'a HeaderMap, resp: &'a HeaderMap) -> Record<'a> {
    // Fixed times, so every iteration renders the same line.
    let started = UNIX_EPOCH + Duration::from_micros(1_643_712_000_123_456); // 2022-02-01T10:40:00Z
    let duration = Duration::from_micros(2_345);
    Record {
        method: b"GET",
        raw_path: b"/2022/02/01/a/",
        request_protocol: "HTTP/2.0",
        request_headers: Some(req),
        response_headers: Some(resp),
        status: 200,
        peer_ip: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 42))),
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 42))),
        host: Some("blog.example.com"),
        request_id: "01HQ3Z8X7K4M2N5P6R7S8T9V0W",
        site: "blog",
        scheme: "https",
        ssl_version: Some("TLSv1.3"),
        started,
        completed: started + duration,
        duration,
        body_bytes: 16634,
    }
}

fn bench_preset(c: &mut Criterion, preset: &str) {
    let format = Format::parse(preset).unwrap_or_else(|e| panic!("{preset}: {e:?}"));
    let req = request_headers();
    let resp = response_headers();
    let r = record(&req, &resp);

    let mut out = Vec::with_capacity(512);
    format.render(&r, &mut out);
    // Show the line once, so a wrong fixture is easy to spot in the output.
    eprint!("{preset}: {}", String::from_utf8_lossy(&out));

    let mut group = c.benchmark_group("log_render");
    group.throughput(Throughput::Elements(1)); // one line per iteration
    group.bench_function(preset, |b| {
        b.iter(|| {
            out.clear();
            format.render(black_box(&r), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn standard(c: &mut Criterion) {
    bench_preset(c, "standard");
}

fn advanced(c: &mut Criterion) {
    bench_preset(c, "advanced");
}

fn json(c: &mut Criterion) {
    bench_preset(c, "json");
}

criterion_group!(benches, standard, advanced, json);
criterion_main!(benches);

//! `limits:` and the answers to requests refused before routing, through
//! the real binary with raw sockets: edgeward's own pages (with the request
//! id, never Pingora's) and a line in the global access log for requests
//! the HTTP parser refuses, slow heads (408), long request lines (414),
//! large heads (431); body size (413) and pauses in a body (408); idle
//! keep-alive connections; connections at once. The limits are small so
//! every wait is short.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw response as edgeward sent it.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Raw {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Raw {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// edgeward's page: its request id in the header and in the page, and
    /// nothing that says Pingora.
    fn assert_edgeward_page(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}\n\n{}", self.head, self.body);
        let id = self
            .header("x-request-id")
            .expect("X-Request-Id")
            .to_string();
        assert!(!id.is_empty());
        assert!(
            self.body.contains(&id),
            "the page shows the id: {}",
            self.body
        );
        assert!(self.body.contains("edgeward"), "{}", self.body);
        assert!(
            !self.head.to_ascii_lowercase().contains("pingora"),
            "{}",
            self.head
        );
        assert_eq!(self.header("connection"), Some("close"), "{}", self.head);
        id
    }
}

/// Send `bytes` on a new connection and read until edgeward closes it.
async fn exchange(port: u16, bytes: &[u8]) -> Raw {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_to_close(&mut s).await
}

async fn read_to_close(s: &mut TcpStream) -> Raw {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => panic!("edgeward did not close the connection in {DEADLINE:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    Raw::parse(&out)
}

fn global_log(ew: &Edgeward) -> PathBuf {
    ew.dir.path().join("global.log")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The global-log line holding `needle`, once it is written.
async fn logged(ew: &Edgeward, needle: &str) -> String {
    let path = global_log(ew);
    eventually(
        DEADLINE,
        &format!("{needle:?} in the global log"),
        || async { lines(&path).into_iter().find(|l| l.contains(needle)) },
    )
    .await
}

/// One site (`a.test`, Echo upstream), the global access log, `limits:`
/// from `limits` (`key: value` pairs).
async fn start(
    up: &Upstream,
    limits: &[(&str, &str)],
    shape: impl FnOnce(Conf) -> Conf,
) -> Edgeward {
    let mut conf = Conf::new()
        .set(
            "access_log",
            "{ file: \"{dir}/global.log\", format: '{client_ip} \"{request}\" {status} {request_header:x-request-id}' }",
        )
        .site("a", |s| s.address("a.test").upstream(&up.address()));
    for (k, v) in limits {
        conf = conf.set_in("limits", k, v);
    }
    Edgeward::start(&shape(conf)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_the_parser_refuses_gets_an_edgeward_page_and_a_log_line() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = start(&up, &[], |c| c).await;
    // A control byte in a header value: refused by Pingora's parser before
    // any phase runs.
    let r = exchange(
        ew.port,
        b"GET /ctl HTTP/1.1\r\nHost: a.test\r\nX-Bad: a\x01b\r\n\r\n",
    )
    .await;
    let id = r.assert_edgeward_page(400);
    let line = logged(&ew, "/ctl").await;
    assert_eq!(line, format!("127.0.0.1 \"GET /ctl HTTP/1.1\" 400 {id}"));
    // Client bytes in the log are escaped: a request line with control
    // bytes cannot forge a line or colour a terminal.
    let r = exchange(
        ew.port,
        b"GET /x\x1b[31m\rX HTTP/1.1\r\nHost: a.test\r\nX-Bad: \x01\r\n\r\n",
    )
    .await;
    r.assert_edgeward_page(400);
    let line = logged(&ew, "/x").await;
    assert!(!line.contains('\x1b') && !line.contains('\r'), "{line:?}");
    // CONNECT is not proxied: edgeward's 405.
    let r = exchange(
        ew.port,
        b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
    )
    .await;
    r.assert_edgeward_page(405);
    logged(&ew, "\"CONNECT a.test:443 HTTP/1.1\" 405").await;
    // Refused before routing too: no Host, an unknown Host.
    let r = exchange(ew.port, b"GET /nohost HTTP/1.1\r\n\r\n").await;
    r.assert_edgeward_page(400);
    logged(&ew, "\"GET /nohost HTTP/1.1\" 400").await;
    let r = get(ew.port, "nobody.test", "/unknown").await.unwrap();
    assert_eq!(r.status, 404);
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(
        logged(&ew, "/unknown").await,
        format!("127.0.0.1 \"GET /unknown HTTP/1.1\" 404 {id}")
    );
    // A site's request is not in the global log.
    let r = get(ew.port, "a.test", "/mine").await.unwrap();
    assert_eq!(r.status, 200);
    // Lines of one file keep their order: once a later one is there, /mine
    // would be too.
    get(ew.port, "nobody.test", "/later").await.unwrap();
    logged(&ew, "/later").await;
    assert!(!lines(&global_log(&ew)).iter().any(|l| l.contains("/mine")));
    let m = ew.metrics().await;
    assert!(
        m.contains("edgeward_refused_requests_total{reason=\"malformed\"} 2"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn long_request_lines_get_414_and_large_heads_431() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = start(&up, &[("max_header_size", "2KiB")], |c| c).await;
    let long = "a".repeat(3000);
    let r = exchange(
        ew.port,
        format!("GET /{long} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes(),
    )
    .await;
    r.assert_edgeward_page(414);
    logged(&ew, "\" 414 ").await;
    let r = exchange(
        ew.port,
        format!("GET /big HTTP/1.1\r\nHost: a.test\r\nX-Big: {long}\r\n\r\n").as_bytes(),
    )
    .await;
    r.assert_edgeward_page(431);
    logged(&ew, "\"GET /big HTTP/1.1\" 431").await;
    // Under the limit: served.
    let fits = "b".repeat(1500);
    let r = request(
        ew.port,
        "GET",
        Some("a.test"),
        "/fits",
        &[("x-fits", &fits)],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    // A reload raises the limit for the next requests.
    let conf = Conf::new()
        .set(
            "access_log",
            "{ file: \"{dir}/global.log\", format: '{client_ip} \"{request}\" {status} {request_header:x-request-id}' }",
        )
        .set_in("limits", "max_header_size", "8KiB")
        .site("a", |s| s.address("a.test").upstream(&up.address()));
    ew.reload(&conf).await;
    eventually(
        DEADLINE,
        "the larger head served after the reload",
        || async {
            let r = request(ew.port, "GET", Some("a.test"), "/big2", &[("x-big", &long)]).await;
            r.ok().filter(|r| r.status == 200).map(|_| ())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_head_gets_408_and_is_closed() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = start(&up, &[("header_timeout", "500ms")], |c| c).await;
    // Slowloris: one byte at a time, never the end of the head. The whole
    // head has 500ms, however steadily bytes come.
    let mut s = TcpStream::connect(("127.0.0.1", ew.port)).await.unwrap();
    let t0 = Instant::now();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a.test\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    loop {
        assert!(t0.elapsed() < DEADLINE, "no answer to a slow head");
        // The pace of a slowloris client (not a synchronisation).
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {
                let _ = s.write_all(b"X").await;
            }
        }
    }
    let took = t0.elapsed();
    let r = Raw::parse(&got);
    let id = r.assert_edgeward_page(408);
    assert!(took >= Duration::from_millis(450), "408 after {took:?}");
    assert!(took < Duration::from_secs(5), "408 after {took:?}");
    assert_eq!(
        logged(&ew, "/slow").await,
        format!("127.0.0.1 \"GET /slow HTTP/1.1\" 408 {id}")
    );
    // A head that arrives in time in several pieces is served.
    let mut s = TcpStream::connect(("127.0.0.1", ew.port)).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
    s.write_all(b"Host: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut s).await.status, 200);
}

/// A client that connects and sends nothing is closed after
/// header_timeout (not after the body or keep-alive timeouts, both longer
/// here): it was held forever, waiting for an h2c preface.
#[tokio::test(flavor = "multi_thread")]
async fn silent_new_connections_are_closed_after_header_timeout() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = start(
        &up,
        &[
            ("header_timeout", "500ms"),
            ("body_timeout", "30s"),
            ("keepalive_timeout", "30s"),
        ],
        |c| c,
    )
    .await;
    let mut s = TcpStream::connect(("127.0.0.1", ew.port)).await.unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("the silent connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing is answered to a client that said nothing");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(400), "closed after {took:?}");
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    // A slow body still has body_timeout between reads, not header_timeout.
    let mut s = TcpStream::connect(("127.0.0.1", ew.port)).await.unwrap();
    s.write_all(b"POST /slow HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\nab")
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(1500), s.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "answered or closed while the body was only paused: {early:?}"
    );
    s.write_all(b"cd").await.unwrap();
    let r = read_to_close_or_response(&mut s).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

async fn read_to_close_or_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keepalive_connections_are_closed() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = start(&up, &[("keepalive_timeout", "1s")], |c| c).await;
    let mut s = TcpStream::connect(("127.0.0.1", ew.port)).await.unwrap();
    for i in 0..2 {
        s.write_all(format!("GET /k{i} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        // Read this one response (Echo answers with a Content-Length).
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let r = loop {
            let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
                .await
                .expect("a response")
                .unwrap();
            assert!(n > 0, "closed before the response");
            got.extend_from_slice(&buf[..n]);
            let r = Raw::parse(&got);
            let len: usize = r.header("content-length").map_or(0, |v| v.parse().unwrap());
            if got.windows(4).any(|w| w == b"\r\n\r\n") && r.body.len() >= len {
                break r;
            }
        };
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // Then idle: closed by edgeward after about a second.
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("the idle connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_get_413_and_slow_bodies_408() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = start(
        &up,
        &[("max_body_size", "1KiB"), ("body_timeout", "500ms")],
        |c| {
            c.site("small", |s| {
                s.address("small.test")
                    .upstream(&up.address())
                    .set("limits", "{ max_body_size: 10 }")
            })
        },
    )
    .await;
    // Announced too large: refused before the body is read.
    let r = exchange(
        ew.port,
        b"POST /cl HTTP/1.1\r\nHost: small.test\r\nContent-Length: 11\r\n\r\n01234567890",
    )
    .await;
    r.assert_edgeward_page(413);
    // Chunked, too large once counted.
    let r = exchange(
        ew.port,
        b"POST /chunked HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n",
    )
    .await;
    r.assert_edgeward_page(413);
    // Within the site's limit, and the global one elsewhere.
    let r = exchange(
        ew.port,
        b"POST /ok HTTP/1.1\r\nHost: small.test\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
    )
    .await;
    assert_eq!(r.status, 200);
    let body = "x".repeat(1000);
    let r = exchange(
        ew.port,
        format!("POST /ok HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{body}").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = exchange(
        ew.port,
        format!("POST /big HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1025\r\n\r\n{body}")
            .as_bytes(),
    )
    .await;
    r.assert_edgeward_page(413);
    // A body that stops half way: 408 after body_timeout.
    let t0 = Instant::now();
    let r = exchange(
        ew.port,
        b"POST /half HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n01234",
    )
    .await;
    let took = t0.elapsed();
    r.assert_edgeward_page(408);
    assert!(took >= Duration::from_millis(450), "408 after {took:?}");
    assert!(took < Duration::from_secs(5), "408 after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_max_connections_are_closed() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = start(&up, &[("max_connections", "3")], |c| c).await;
    // Three keep-alive connections, each shown to be served.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Connection::open(ew.port).await.unwrap();
        let r = c
            .request("GET", Some("a.test"), "/held", &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        held.push(c);
    }
    // The fourth is closed without an answer.
    let mut s = TcpStream::connect(("127.0.0.1", ew.port)).await.unwrap();
    let _ = s
        .write_all(b"GET /fourth HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await;
    let r = read_to_close(&mut s).await;
    assert_eq!(r.status, 0, "{}", r.head);
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
    let m = ew.metrics().await;
    assert!(m.contains("edgeward_connections_refused_total 1"), "{m}");
    assert!(m.contains("edgeward_client_connections 3"), "{m}");
    // One closed: a new connection is served again.
    held.pop();
    eventually(DEADLINE, "a connection served after one closed", || async {
        let r = get(ew.port, "a.test", "/again").await;
        r.ok().filter(|r| r.status == 200).map(|_| ())
    })
    .await;
}

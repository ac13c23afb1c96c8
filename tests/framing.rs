//! The adversarial framing suite (issue #15): raw bytes from the public
//! request-smuggling literature against the real binary, in front of two
//! recording upstreams (RFC-strict and lenient) that parse every request
//! themselves. For every case and both upstreams: edgeward's answers are
//! the expected ones, every request an upstream parsed is one edgeward
//! framed, no upstream ever failed to parse what edgeward sent, and a
//! victim's request that follows on a pooled upstream connection arrives
//! intact. The cases are tests/fixtures/framing-cases.txt, shared with
//! bench/framing-nginx.sh.

mod common;

use common::*;
use std::time::Duration;

/// How long a client waits for more bytes before it calls the connection
/// open (every case ends in a close when edgeward behaves).
const IDLE: Duration = Duration::from_secs(2);

struct Stage {
    strict: Recorder,
    lenient: Recorder,
    ew: Edgeward,
}

impl Stage {
    async fn start() -> Stage {
        let strict = Recorder::start(Parsing::Strict).await;
        let lenient = Recorder::start(Parsing::Lenient).await;
        let conf = Conf::new()
            .site("strict", |s| {
                s.address("strict.test").upstream(&strict.address())
            })
            .site("lenient", |s| {
                s.address("lenient.test").upstream(&lenient.address())
            });
        let ew = Edgeward::start(&conf).await;
        Stage {
            strict,
            lenient,
            ew,
        }
    }

    fn sites(&self) -> [(&'static str, &Recorder); 2] {
        [
            ("strict.test", &self.strict),
            ("lenient.test", &self.lenient),
        ]
    }
}

/// What is wrong with the requests `rec` parsed (events since the last
/// look), `victim` being the target of the last request it must have seen.
fn upstream_problems(events: &[Event], victim: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut last = None;
    for e in events {
        match e {
            Event::Request(p) => {
                if !p.framed_by_edgeward() {
                    problems.push(format!(
                        "the upstream parsed a request edgeward did not frame: {} {} on conn {}",
                        p.method, p.target, p.conn
                    ));
                }
                last = Some(p);
            }
            Event::Refused { conn, why } => problems.push(format!(
                "the upstream could not parse what edgeward sent on conn {conn}: {why}"
            )),
            Event::Tunnel { conn, bytes } => problems.push(format!(
                "bytes tunnelled on conn {conn} without an upgrade: {:?}",
                String::from_utf8_lossy(bytes)
            )),
            Event::Truncated { .. } | Event::Closed { .. } => {}
        }
    }
    if let Some(v) = victim {
        match last {
            Some(p) if p.method == "GET" && p.target == v && p.body.is_empty() => {}
            other => problems.push(format!(
                "the victim's request arrived as {:?}",
                other.map(|p| format!("{} {} body {:?}", p.method, p.target, p.body))
            )),
        }
    }
    problems
}

/// A victim's GET on a new client connection: answered with its own
/// response, parsed intact upstream. Returns what went wrong.
async fn victim(port: u16, host: &str, rec: &Recorder) -> Vec<String> {
    let req = format!("GET /victim HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let ex = exchange(port, req.as_bytes(), IDLE).await;
    let mut problems = Vec::new();
    let ok = ex.responses.len() == 1
        && ex.responses[0].status == 200
        && String::from_utf8_lossy(&ex.responses[0].body).ends_with(" GET /victim\n");
    if !ok {
        problems.push(format!(
            "the victim got {} {:?}",
            ex.outcome(),
            ex.responses
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect::<Vec<_>>()
        ));
    }
    problems.extend(upstream_problems(&rec.take(), Some("/victim")));
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literature_cases() {
    let cases = framing_cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let stage = Stage::start().await;
    let mut failures = Vec::new();
    for case in &cases {
        for (host, rec) in stage.sites() {
            rec.take();
            let ex = exchange(stage.ew.port, &case.bytes_for(host), IDLE).await;
            let mut problems = Vec::new();
            let outcome = ex.outcome();
            if outcome != case.expect {
                problems.push(format!("outcome {outcome:?}, expected {:?}", case.expect));
            }
            if let Some(last) = ex.responses.last()
                && ex.closed
                && !last.says_close()
            {
                problems.push(format!(
                    "the connection was closed after a {} that did not say `Connection: close`",
                    last.status
                ));
            }
            problems.extend(upstream_problems(&rec.take(), None));
            problems.extend(victim(stage.ew.port, host, rec).await);
            for p in problems {
                failures.push(format!("{} [{host}] ({}): {p}", case.name, case.source));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}\nedgeward's log:\n{}",
        failures.len(),
        failures.join("\n"),
        stage.ew.log()
    );
}

/// Three requests in one write are answered in order, each with its own
/// response; the last says `Connection: close` because it asked to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let stage = Stage::start().await;
    let (host, rec) = stage.sites()[1];
    let mut req = String::new();
    for (i, close) in [(1, false), (2, false), (3, true)] {
        req.push_str(&format!("GET /{i} HTTP/1.1\r\nHost: {host}\r\n"));
        if close {
            req.push_str("Connection: close\r\n");
        }
        req.push_str("\r\n");
    }
    let ex = exchange(stage.ew.port, req.as_bytes(), IDLE).await;
    let bodies: Vec<String> = ex
        .responses
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    for (i, b) in bodies.iter().enumerate() {
        assert!(b.ends_with(&format!(" GET /{}\n", i + 1)), "{bodies:?}");
    }
    assert!(!ex.responses[0].says_close() && !ex.responses[1].says_close());
    assert!(ex.responses[2].says_close() && ex.closed);
    assert!(upstream_problems(&rec.take(), Some("/3")).is_empty());
}

/// An Upgrade is tunnelled once the upstream answered 101, not before
/// (CVE-2026-2833 is the "before"; the literature cases cover it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_tunnels_after_the_upstreams_101() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stage = Stage::start().await;
    let (host, rec) = stage.sites()[0];
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", stage.ew.port))
        .await
        .unwrap();
    let req = format!(
        "GET /upgrade-ok HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"ping through the tunnel").await.unwrap();
    let echoed = eventually(DEADLINE, "the tunnel's echo", || {
        let rec = &rec;
        async move {
            rec.events().iter().any(|e| {
                matches!(e, Event::Tunnel { bytes, .. } if bytes == b"ping through the tunnel")
            })
            .then_some(())
        }
    })
    .await;
    let _ = echoed;
    let mut back = Vec::new();
    while back.len() < 23 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        back.extend_from_slice(&buf[..n]);
    }
    assert_eq!(back, b"ping through the tunnel");
}

/// An upstream response with ambiguous framing is a 502, and the upstream
/// connection it came on is closed, never handed to the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_upstream_responses_are_502_and_dropped() {
    let stage = Stage::start().await;
    let (host, rec) = stage.sites()[1];
    let mut failures = Vec::new();
    let heads = BAD_RESPONSES.iter().map(|(n, _)| (n, "502 close"));
    // The head went out before the body turned out broken: the response is
    // cut short and the connection closed.
    let bodies = BAD_RESPONSE_BODIES
        .iter()
        .map(|(n, _)| (n, "- garbage close"));
    for (name, expected) in heads.chain(bodies) {
        rec.take();
        let req =
            format!("GET /respond/{name} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let ex = exchange(stage.ew.port, req.as_bytes(), IDLE).await;
        if ex.outcome() != expected {
            failures.push(format!(
                "{name}: edgeward answered {}, expected {expected}",
                ex.outcome()
            ));
        }
        if ex
            .responses
            .iter()
            .any(|r| r.header("x-smuggled").is_some())
        {
            failures.push(format!("{name}: the smuggled response reached the client"));
        }
        let bad_conn = rec.requests().last().map(|p| p.conn);
        let v = format!("GET /victim HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let ex = exchange(stage.ew.port, v.as_bytes(), IDLE).await;
        let ok = ex.responses.len() == 1
            && ex.responses[0].status == 200
            && ex.responses[0].header("x-smuggled").is_none();
        if !ok {
            failures.push(format!("{name}: the victim got {}", ex.outcome()));
        }
        let victim_conn = rec.requests().last().map(|p| p.conn);
        if bad_conn.is_none() || victim_conn == bad_conn {
            failures.push(format!(
                "{name}: the victim's request went on connection {victim_conn:?}, the bad answer came on {bad_conn:?}"
            ));
        }
        eventually(DEADLINE, "the bad upstream connection closed", || {
            let events = rec.events();
            async move {
                events
                    .iter()
                    .any(|e| matches!(e, Event::Closed { conn } if Some(*conn) == bad_conn))
                    .then_some(())
            }
        })
        .await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

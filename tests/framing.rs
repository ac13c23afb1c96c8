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
    for e in events {
        match e {
            Event::Request(p) => {
                if !p.framed_by_edgeward() {
                    problems.push(format!(
                        "the upstream parsed a request edgeward did not frame: {} {} on conn {}",
                        p.method, p.target, p.conn
                    ));
                }
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
    // The victim's request must be there, intact (requests on other
    // upstream connections may arrive around it).
    if let Some(v) = victim {
        let intact = |p: &&Parsed| p.method == "GET" && p.target == v && p.body.is_empty();
        let requests: Vec<&Parsed> = events
            .iter()
            .filter_map(|e| match e {
                Event::Request(p) => Some(p),
                _ => None,
            })
            .collect();
        if !requests.iter().any(intact) {
            problems.push(format!(
                "the victim's request did not arrive intact; the upstream parsed {:?}",
                requests
                    .iter()
                    .map(|p| format!("{} {} body {:?}", p.method, p.target, p.body))
                    .collect::<Vec<_>>()
            ));
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

/// The oracle itself: bytes that smuggle a request past a front end, sent
/// straight to the lenient upstream, are caught as a request nobody framed
/// and as a poisoned victim (so a pass above means something).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oracle_sees_a_smuggled_request() {
    let lenient = Recorder::start(Parsing::Lenient).await;
    // CL.TE twice, as a front end that trusts Transfer-Encoding would pass
    // it on: a smuggled request on its own, then one that swallows the
    // victim's request behind it.
    let head = "POST / HTTP/1.1\r\nHost: a\r\nX-Request-Id: 1\r\nX-Forwarded-Proto: http\r\n\
        Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let victim =
        "GET /victim HTTP/1.1\r\nHost: a\r\nX-Request-Id: 2\r\nX-Forwarded-Proto: http\r\n\r\n";
    let attack = format!(
        "{head}GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n{head}GET /smuggled HTTP/1.1\r\nX: {victim}"
    );
    exchange(lenient.addr.port(), attack.as_bytes(), IDLE).await;
    let events = eventually(DEADLINE, "four requests parsed", || {
        let events = lenient.events();
        async move {
            let n = events
                .iter()
                .filter(|e| matches!(e, Event::Request(_)))
                .count();
            (n >= 4).then_some(events)
        }
    })
    .await;
    let problems = upstream_problems(&events, Some("/victim"));
    assert!(
        problems.iter().any(|p| p.contains("did not frame")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("victim")),
        "{problems:?}"
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
    // The upstream received the bytes as tunnel data, not as a request.
    eventually(DEADLINE, "the bytes at the upstream", || {
        let events = rec.events();
        async move {
            let tunnelled = |e: &Event| {
                matches!(e, Event::Tunnel { bytes, .. } if bytes == b"ping through the tunnel")
            };
            events.iter().any(tunnelled).then_some(())
        }
    })
    .await;
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

/// HTTP/2 clients in front of an HTTP/1.1 upstream (Kettle, "HTTP/2: The
/// Sequel is Always Worse", PortSwigger 2021): connection-specific fields
/// (H2.TE), CR/LF/NUL in a field (H2 CRLF injection), a body longer or
/// shorter than its content-length (H2.CL) are refused before anything
/// reaches the upstream, and the next request on the pooled upstream
/// connection is not poisoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_requests_that_would_misframe_upstream_are_refused() {
    let stage = Stage::start().await;
    let (host, rec) = stage.sites()[1];
    let base: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", host.as_bytes()),
    ];
    let smuggle: &[u8] = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: smuggled.test\r\n\r\n";
    type Fields = &'static [(&'static [u8], &'static [u8])];
    let cases: &[(&str, Fields, Option<&[u8]>)] = &[
        (
            "H2.TE: transfer-encoding",
            &[(b"transfer-encoding", b"chunked")],
            Some(smuggle),
        ),
        ("connection", &[(b"connection", b"keep-alive")], Some(b"x")),
        ("keep-alive", &[(b"keep-alive", b"timeout=5")], Some(b"x")),
        (
            "proxy-connection",
            &[(b"proxy-connection", b"keep-alive")],
            Some(b"x"),
        ),
        ("upgrade", &[(b"upgrade", b"websocket")], Some(b"x")),
        ("te other than trailers", &[(b"te", b"gzip")], Some(b"x")),
        (
            "CRLF in a value",
            &[(b"x-a", b"a\r\ntransfer-encoding: chunked")],
            Some(smuggle),
        ),
        ("LF in a value", &[(b"x-a", b"a\nb: c")], Some(b"x")),
        ("NUL in a value", &[(b"x-a", b"a\x00b")], Some(b"x")),
        ("CRLF in a name", &[(b"x-a\r\nx-b", b"c")], Some(b"x")),
        (
            "colon in a name",
            &[(b"transfer-encoding:chunked", b"x")],
            Some(b"x"),
        ),
        ("upper case name", &[(b"X-Upper", b"1")], Some(b"x")),
        (
            "H2.CL: body longer than content-length",
            &[(b"content-length", b"0")],
            Some(smuggle),
        ),
        (
            "body shorter than content-length",
            &[(b"content-length", b"100")],
            Some(b"short"),
        ),
    ];
    // Each case has its own path, so that a request that reaches the
    // upstream late (on its own connection) is still told apart.
    let paths: Vec<String> = (0..cases.len()).map(|i| format!("/h2/{i}")).collect();
    let mut failures = Vec::new();
    let mut events = Vec::new();
    for ((name, extra, body), path) in cases.iter().zip(&paths) {
        let mut fields = base.clone();
        fields.push((b":path", path.as_bytes()));
        fields.extend_from_slice(extra);
        let answer = h2::request(stage.ew.port, &fields, *body).await;
        if !answer.refused() {
            failures.push(format!("{name}: answered {answer:?}"));
        }
        let problems = victim(stage.ew.port, host, rec).await;
        failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
        events.extend(rec.take());
    }
    // The suite can tell a refusal from an answer: a well-formed request is
    // served, its body intact.
    let mut fields = base.clone();
    fields.extend([(&b":path"[..], &b"/h2/ok"[..]), (b"content-length", b"5")]);
    let answer = h2::request(stage.ew.port, &fields, Some(b"hello")).await;
    assert_eq!(answer, h2::Answer::Status(200));
    events.extend(rec.take());
    failures.extend(upstream_problems(&events, None));
    // Nothing of a refused request reached the upstream as a request, except
    // the head of one whose body then ran past its content-length: forwarded
    // as declared (`content-length: 0`, no body) before the excess arrived,
    // the excess never.
    let longer = cases.iter().position(|c| c.0.starts_with("H2.CL")).unwrap();
    for e in &events {
        let Event::Request(p) = e else { continue };
        let declared_then_reset = p.target == paths[longer] && p.body.is_empty();
        let ok = p.target == "/victim"
            || (p.target == "/h2/ok" && p.body == b"hello")
            || declared_then_reset;
        if !ok {
            failures.push(format!(
                "the upstream parsed {} {} with body {:?}",
                p.method,
                p.target,
                String::from_utf8_lossy(&p.body)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Run by bench/framing-nginx.sh, which starts nginx (Debian's) in front of
/// two recording upstreams on the ports it passes: every case against nginx
/// and against edgeward (on the same upstreams); prints each case's
/// outcomes as a Markdown table and fails on a difference the case file
/// does not explain (`why:`), or an nginx outcome other than the one it
/// records (`nginx:`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx: run bench/framing-nginx.sh"]
async fn nginx_differences() {
    let env = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run bench/framing-nginx.sh"))
    };
    let nginx_port: u16 = env("FRAMING_NGINX_PORT").parse().unwrap();
    let strict = Recorder::start_on(
        &format!("127.0.0.1:{}", env("FRAMING_STRICT_PORT")),
        Parsing::Strict,
    )
    .await;
    let lenient = Recorder::start_on(
        &format!("127.0.0.1:{}", env("FRAMING_LENIENT_PORT")),
        Parsing::Lenient,
    )
    .await;
    let conf = Conf::new()
        .site("strict", |s| {
            s.address("strict.test").upstream(&strict.address())
        })
        .site("lenient", |s| {
            s.address("lenient.test").upstream(&lenient.address())
        });
    let ew = Edgeward::start(&conf).await;
    // nginx is up when it answers.
    eventually(DEADLINE, "nginx answering", || async move {
        let ex = exchange(
            nginx_port,
            b"GET / HTTP/1.1\r\nHost: strict.test\r\nConnection: close\r\n\r\n",
            IDLE,
        )
        .await;
        (ex.responses.len() == 1).then_some(())
    })
    .await;
    let mut rows = vec![
        "| case | source | edgeward | nginx 1.22 | why they differ |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    let mut problems = Vec::new();
    let mut differences = 0;
    for case in framing_cases() {
        let mut outcomes = Vec::new();
        for port in [ew.port, nginx_port] {
            let mut out = String::new();
            for (host, rec) in [("strict.test", &strict), ("lenient.test", &lenient)] {
                rec.take();
                let ex = exchange(port, &case.bytes_for(host), IDLE).await;
                let mut p = upstream_problems(&rec.take(), None);
                p.extend(victim(port, host, rec).await);
                if out.is_empty() {
                    out = ex.outcome();
                } else if out != ex.outcome() {
                    out = format!("{out} / {}", ex.outcome());
                }
                if !p.is_empty() {
                    out = format!("{out} (upstream: {})", p.join("; "));
                }
            }
            outcomes.push(out);
        }
        let (ours, theirs) = (&outcomes[0], &outcomes[1]);
        if !case.nginx.is_empty() && case.nginx != *theirs {
            problems.push(format!(
                "{}: nginx answered {theirs:?}, the case file says {:?}",
                case.name, case.nginx
            ));
        }
        if ours != theirs {
            differences += 1;
            if case.why.is_empty() {
                problems.push(format!(
                    "{}: edgeward {ours:?}, nginx {theirs:?}, and no `why:`",
                    case.name
                ));
            }
        }
        let why = if ours == theirs {
            ""
        } else {
            case.why.as_str()
        };
        rows.push(format!(
            "| {} | {} | {ours} | {theirs} | {why} |",
            case.name,
            case.source.replace('|', "\\|")
        ));
    }
    rows.push(String::new());
    rows.push(format!("{differences} differences"));
    let table = rows.join("\n");
    println!("{table}");
    if let Ok(path) = std::env::var("FRAMING_REPORT") {
        std::fs::write(path, &table).unwrap();
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

//! Raw bytes on a TCP connection, and the responses that come back, parsed
//! one after the other (for smuggling and pipelining tests), plus the
//! shared case list of the framing suite (tests/fixtures/framing-cases.txt).

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response read off the connection.
#[derive(Debug, Clone)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    /// Names lowercased.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// What a client saw after sending its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    pub(crate) responses: Vec<RawResponse>,
    /// The server closed the connection (else: still open when the client
    /// stopped waiting).
    pub(crate) closed: bool,
    /// Bytes after the last complete response (a broken one).
    pub(crate) trailing: Vec<u8>,
}

impl Exchange {
    /// `200 200 close`, `400 close`, `- close`, `- open`: the statuses in
    /// order, then whether the connection ended.
    pub(crate) fn outcome(&self) -> String {
        let mut words: Vec<String> = self
            .responses
            .iter()
            .map(|r| r.status.to_string())
            .collect();
        if words.is_empty() {
            words.push("-".into());
        }
        if !self.trailing.is_empty() {
            words.push("garbage".into());
        }
        words.push(if self.closed { "close" } else { "open" }.into());
        words.join(" ")
    }
}

/// Send `bytes` in one write to `port`, then read responses until the
/// server closes the connection or has been silent for `idle`.
pub(crate) async fn exchange(port: u16, bytes: &[u8], idle: Duration) -> Exchange {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.set_nodelay(true).ok();
    let _ = s.write_all(bytes).await;
    read_responses(&mut s, idle).await
}

/// Read responses from `s` until it closes or is silent for `idle` (the
/// whole read is bounded by 20 s).
pub(crate) async fn read_responses(s: &mut TcpStream, idle: Duration) -> Exchange {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut closed = false;
    let mut chunk = [0u8; 8192];
    while start.elapsed() < super::DEADLINE {
        match tokio::time::timeout(idle, s.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let (responses, used) = parse_responses(&buf, closed);
    Exchange {
        responses,
        closed,
        trailing: buf[used..].to_vec(),
    }
}

/// Responses in `buf`, and how many bytes they took.
pub(crate) fn parse_responses(buf: &[u8], closed: bool) -> (Vec<RawResponse>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((r, used)) = parse_response(&buf[at..], closed) {
        out.push(r);
        at += used;
    }
    (out, at)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn parse_response(buf: &[u8], closed: bool) -> Option<(RawResponse, usize)> {
    let end = find(buf, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut resp = RawResponse {
        status,
        headers: headers.clone(),
        body: Vec::new(),
    };
    if status < 200 || status == 204 || status == 304 {
        return Some((resp, end));
    }
    if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut at = end;
        loop {
            let lf = find(&buf[at..], b"\r\n")?;
            let size = usize::from_str_radix(
                std::str::from_utf8(&buf[at..at + lf])
                    .ok()?
                    .split(';')
                    .next()?,
                16,
            )
            .ok()?;
            at += lf + 2;
            if size == 0 {
                let t = find(&buf[at..], b"\r\n")?;
                return Some((resp, at + t + 2));
            }
            resp.body.extend_from_slice(buf.get(at..at + size)?);
            at += size + 2;
        }
    }
    if let Some(cl) = get("content-length") {
        let n: usize = cl.parse().ok()?;
        resp.body = buf.get(end..end + n)?.to_vec();
        return Some((resp, end + n));
    }
    // Close-delimited.
    if closed {
        resp.body = buf[end..].to_vec();
        return Some((resp, buf.len()));
    }
    None
}

/// One case of tests/fixtures/framing-cases.txt.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) source: String,
    /// edgeward's outcome (see [`Exchange::outcome`]).
    pub(crate) expect: String,
    /// nginx 1.22's outcome, and why it differs from edgeward's (if it does).
    pub(crate) nginx: String,
    pub(crate) why: String,
    /// The bytes, `{host}` still in them.
    pub(crate) send: Vec<u8>,
}

impl Case {
    pub(crate) fn bytes_for(&self, host: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.send.len());
        let mut rest = &self.send[..];
        while let Some(i) = find(rest, b"{host}") {
            out.extend_from_slice(&rest[..i]);
            out.extend_from_slice(host.as_bytes());
            rest = &rest[i + 6..];
        }
        out.extend_from_slice(rest);
        out
    }
}

/// `\r \n \t \\ \xHH` in the case file.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' if i + 3 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).expect("\\xHH"));
                    i += 4;
                    continue;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Every case of the shared case file.
pub(crate) fn framing_cases() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/framing-cases.txt"
    );
    let text = std::fs::read_to_string(path).expect("read the case file");
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("== ") {
            cases.push(Case {
                name: name.trim().to_string(),
                source: String::new(),
                expect: String::new(),
                nginx: String::new(),
                why: String::new(),
                send: Vec::new(),
            });
            continue;
        }
        let c = cases.last_mut().expect("a case starts with '== name'");
        let (key, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("{}: bad line {line:?}", c.name));
        match key {
            "source" => c.source = value.to_string(),
            "expect" => c.expect = value.to_string(),
            "nginx" => c.nginx = value.to_string(),
            "why" => c.why = value.to_string(),
            "send" => c.send.extend(unescape(value)),
            _ => panic!("{}: unknown key {key}", c.name),
        }
    }
    for c in &cases {
        assert!(
            !c.source.is_empty() && !c.expect.is_empty() && !c.send.is_empty(),
            "case {} needs source, expect and send",
            c.name
        );
    }
    cases
}

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

/// Read from `s` until the end of a message head (the blank line); None
/// when the peer closes or fails first. What follows the head may be in the
/// bytes returned.
pub(crate) async fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    Some(head)
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

/// HTTP/2 (cleartext, prior knowledge) by hand: one request whose header
/// fields and body are written as given, none checked or normalised on the
/// way out (what an attacker's client does; hyper would refuse to send
/// most of the suite's requests).
pub(crate) mod h2 {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An HPACK string literal, not Huffman-coded (lengths below 127).
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        assert!(s.len() < 127);
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }

    /// How the server answered the request on stream 1.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Answer {
        Status(u16),
        /// RST_STREAM with this error code.
        Reset(u32),
        /// GOAWAY with this error code.
        GoAway(u32),
        /// The connection closed without any of those.
        Closed,
    }

    impl Answer {
        /// Refused: reset, gone away, or a 4xx.
        pub(crate) fn refused(&self) -> bool {
            match self {
                Answer::Status(s) => (400..500).contains(s),
                _ => true,
            }
        }
    }

    /// Send one request: `fields` in order (pseudo-fields included), then
    /// `body` in one DATA frame that ends the stream (no DATA when None).
    pub(crate) async fn request(
        port: u16,
        fields: &[(&[u8], &[u8])],
        body: Option<&[u8]>,
    ) -> Answer {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(4, 0, 0, &[]));
        let mut block = Vec::new();
        for (name, value) in fields {
            // Literal header field without indexing, new name.
            block.push(0x00);
            string(&mut block, name);
            string(&mut block, value);
        }
        let end_stream = if body.is_none() { 0x1 } else { 0 };
        out.extend(frame(1, 0x4 | end_stream, 1, &block));
        if let Some(b) = body {
            out.extend(frame(0, 0x1, 1, b));
        }
        let _ = s.write_all(&out).await;
        read_answer(&mut s).await
    }

    async fn read_answer(s: &mut TcpStream) -> Answer {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let start = std::time::Instant::now();
        loop {
            // Whole frames in the buffer.
            while buf.len() >= 9 {
                let len =
                    (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                match kind {
                    4 if flags & 1 == 0 => {
                        let _ = s.write_all(&frame(4, 1, 0, &[])).await;
                    }
                    1 if stream == 1 => return Answer::Status(status(&payload, flags)),
                    3 if stream == 1 && payload.len() >= 4 => {
                        return Answer::Reset(u32::from_be_bytes([
                            payload[0], payload[1], payload[2], payload[3],
                        ]));
                    }
                    7 if payload.len() >= 8 => {
                        return Answer::GoAway(u32::from_be_bytes([
                            payload[4], payload[5], payload[6], payload[7],
                        ]));
                    }
                    _ => {}
                }
            }
            if start.elapsed() > super::super::DEADLINE {
                return Answer::Closed;
            }
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return Answer::Closed,
            }
        }
    }

    /// `:status` from the first field of a HEADERS block (0 if not found):
    /// indexed (static table 8-14) or a literal with name index 8, plain or
    /// Huffman-coded digits.
    fn status(block: &[u8], flags: u8) -> u16 {
        let block = if flags & 0x8 != 0 {
            // PADDED
            let pad = usize::from(block[0]);
            &block[1..block.len() - pad]
        } else {
            block
        };
        let block = if flags & 0x20 != 0 {
            &block[5..]
        } else {
            block
        };
        let Some(&first) = block.first() else {
            return 0;
        };
        if first & 0x80 != 0 {
            return match first & 0x7f {
                8 => 200,
                9 => 204,
                10 => 206,
                11 => 304,
                12 => 400,
                13 => 404,
                14 => 500,
                _ => 0,
            };
        }
        // Literal with indexed name :status (8): 0x48, 0x08 or 0x18.
        if first & 0x0f != 8 && first & 0x3f != 8 {
            return 0;
        }
        let Some(&len) = block.get(1) else { return 0 };
        let (huffman, n) = (len & 0x80 != 0, usize::from(len & 0x7f));
        let Some(raw) = block.get(2..2 + n) else {
            return 0;
        };
        let digits: String = if huffman {
            // Huffman codes of '0'-'2' are 5 bits (0-2), of '3'-'9' 6 bits (0x19-0x1f).
            let mut bits = raw
                .iter()
                .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1));
            let mut out = String::new();
            while out.len() < 3 {
                let mut v = 0u8;
                for _ in 0..5 {
                    v = (v << 1) | bits.next().unwrap_or(1);
                }
                if v <= 2 {
                    out.push((b'0' + v) as char);
                } else {
                    v = (v << 1) | bits.next().unwrap_or(1);
                    if (0x19..=0x1f).contains(&v) {
                        out.push((b'3' + v - 0x19) as char);
                    } else {
                        return 0;
                    }
                }
            }
            out
        } else {
            String::from_utf8_lossy(raw).into_owned()
        };
        digits.parse().unwrap_or(0)
    }
}

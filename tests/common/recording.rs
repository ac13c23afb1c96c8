//! Recording upstreams for the framing suite: raw HTTP/1.1 servers that
//! parse requests themselves, one RFC 9112-strict and one lenient (the way
//! loosely written application servers parse), and record every request
//! they parse, on which connection, and every framing error. A request
//! smuggled past edgeward shows up here as a request edgeward did not frame.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a recording upstream parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsing {
    /// RFC 9112: CRLF only, no obs-fold, no whitespace before the colon;
    /// Content-Length with Transfer-Encoding, a coding other than `chunked`,
    /// a bad Content-Length or chunk line are errors (400, then close).
    Strict,
    /// Content-Length first (even beside Transfer-Encoding), its leading
    /// digits only; `chunked` anywhere in Transfer-Encoding; bare LF line
    /// ends; obs-fold joined; chunk sizes read up to the first non-hex byte.
    Lenient,
}

/// One request as the upstream parsed it.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// Which accepted connection (0, 1, ...) it arrived on.
    pub(crate) conn: usize,
    pub(crate) method: String,
    pub(crate) target: String,
    /// Names lowercased, values as received (lossy UTF-8).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Parsed {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Framed by edgeward: it carries the fields edgeward sets on every
    /// request it forwards (the suite's requests never send them).
    pub(crate) fn framed_by_edgeward(&self) -> bool {
        self.header("x-request-id").is_some() && self.header("x-forwarded-proto").is_some()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Event {
    Request(Parsed),
    /// The upstream could not parse what arrived on `conn` (it answered 400
    /// and closed).
    Refused {
        conn: usize,
        why: String,
    },
    /// The connection closed in the middle of a request (`bytes` of it had
    /// arrived): a request the sender gave up on, never parsed.
    Truncated {
        conn: usize,
        bytes: usize,
    },
    /// Bytes passed through an upgraded (101) connection.
    Tunnel {
        conn: usize,
        bytes: Vec<u8>,
    },
    Closed {
        conn: usize,
    },
}

pub(crate) struct Recorder {
    pub(crate) addr: SocketAddr,
    pub(crate) parsing: Parsing,
    events: Arc<Mutex<Vec<Event>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Canned upstream answers with ambiguous or broken framing, asked for with
/// `GET /respond/<name>`; each is followed in the same write by a complete
/// response marked `X-Smuggled`, which a proxy that misframes would hand to
/// the next client. The head's framing is wrong in these: a proxy can still
/// answer 502.
pub(crate) const BAD_RESPONSES: &[(&str, &str)] = &[
    (
        "cl-te",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "te-cl",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\n",
    ),
    (
        "two-cl",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello",
    ),
    (
        "cl-list",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 2\r\n\r\nhello",
    ),
    (
        "cl-same-list",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
    ),
    (
        "cl-plus",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
    ),
    (
        "cl-hex",
        "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello",
    ),
    (
        "te-not-chunked-cl",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
    ),
];

/// Like [`BAD_RESPONSES`], but the head is fine and the body's chunks are
/// not: the head has gone to the client when the body turns out broken, so
/// the client's response is cut short instead.
pub(crate) const BAD_RESPONSE_BODIES: &[(&str, &str)] = &[
    (
        "bad-chunk-size",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-lf-ext",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
    ),
];

const SMUGGLED_RESPONSE: &str =
    "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nX-Smuggled: yes\r\n\r\nsmuggled!";

impl Recorder {
    pub(crate) async fn start(parsing: Parsing) -> Recorder {
        Self::start_on("127.0.0.1:0", parsing).await
    }

    pub(crate) async fn start_on(addr: &str, parsing: Parsing) -> Recorder {
        let listener = TcpListener::bind(addr).await.expect("bind recorder");
        let addr = listener.local_addr().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let task = tokio::spawn(async move {
            let next = AtomicUsize::new(0);
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn = next.fetch_add(1, Ordering::SeqCst);
                let ev = ev.clone();
                tokio::spawn(async move {
                    serve(stream, conn, parsing, &ev).await;
                    ev.lock().unwrap().push(Event::Closed { conn });
                });
            }
        });
        Recorder {
            addr,
            parsing,
            events,
            task,
        }
    }

    pub(crate) fn address(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The events so far, and none kept.
    pub(crate) fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    pub(crate) fn requests(&self) -> Vec<Parsed> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Request(p) => Some(p),
                _ => None,
            })
            .collect()
    }
}

/// Why a request could not be parsed.
type Fail = String;

enum Step<T> {
    Done(T),
    More,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

async fn serve(stream: TcpStream, conn: usize, parsing: Parsing, ev: &Mutex<Vec<Event>>) {
    let mut c = Conn {
        stream,
        buf: Vec::new(),
        eof: false,
    };
    loop {
        // Parse one request, reading more while it is incomplete.
        let parsed = loop {
            match parse_request(&c.buf, parsing) {
                Ok(Step::Done(p)) => break Ok(p),
                Ok(Step::More) => {
                    if !c.fill().await {
                        if !c.buf.is_empty() {
                            let bytes = c.buf.len();
                            ev.lock().unwrap().push(Event::Truncated { conn, bytes });
                        }
                        return;
                    }
                }
                Err(why) => break Err(why),
            }
        };
        let (req, used) = match parsed {
            Ok(p) => p,
            Err(why) => {
                ev.lock().unwrap().push(Event::Refused { conn, why });
                let _ = c
                    .stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                return;
            }
        };
        c.buf.drain(..used);
        let req = Parsed { conn, ..req };
        ev.lock().unwrap().push(Event::Request(req.clone()));
        let upgrade = req.header("upgrade").is_some();
        if let Some(name) = req.target.strip_prefix("/respond/") {
            let mut all = BAD_RESPONSES.iter().chain(BAD_RESPONSE_BODIES);
            let canned = all.find(|(n, _)| *n == name).map_or(
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                |(_, r)| r,
            );
            let out = format!("{canned}{SMUGGLED_RESPONSE}");
            if c.stream.write_all(out.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        // `/upgrade-always`: a 101 whatever the request asked for (an
        // upstream that switches protocols unprompted).
        if (upgrade && req.target.starts_with("/upgrade-ok"))
            || req.target.starts_with("/upgrade-always")
        {
            let head = "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
            if c.stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // A tunnel: record and echo whatever comes.
            loop {
                if !c.buf.is_empty() {
                    let bytes = std::mem::take(&mut c.buf);
                    let _ = c.stream.write_all(&bytes).await;
                    ev.lock().unwrap().push(Event::Tunnel { conn, bytes });
                }
                if !c.fill().await {
                    return;
                }
            }
        }
        let body = format!("ok conn={conn} {} {}\n", req.method, req.target);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if c.stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

/// The next line of `buf` from `at`: (line without its ending, index after
/// it), or None when no line end has arrived yet.
fn line(buf: &[u8], at: usize, parsing: Parsing) -> Result<Option<(&[u8], usize)>, Fail> {
    let Some(lf) = buf[at..].iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let raw = &buf[at..at + lf];
    let text = match parsing {
        Parsing::Strict => match raw.strip_suffix(b"\r") {
            Some(t) => t,
            None => return Err(format!("bare LF after {:?}", lossy(raw))),
        },
        Parsing::Lenient => raw.strip_suffix(b"\r").unwrap_or(raw),
    };
    if parsing == Parsing::Strict && text.contains(&b'\r') {
        return Err(format!("bare CR in {:?}", lossy(text)));
    }
    Ok(Some((text, at + lf + 1)))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request(buf: &[u8], parsing: Parsing) -> Result<Step<(Parsed, usize)>, Fail> {
    let strict = parsing == Parsing::Strict;
    let mut at = 0;
    // Leading empty lines are ignored (RFC 9112 section 2.2).
    let request_line = loop {
        let Some((l, next)) = line(buf, at, parsing)? else {
            return Ok(Step::More);
        };
        at = next;
        if !l.is_empty() {
            break l;
        }
    };
    let parts: Vec<&[u8]> = request_line.split(|&b| b == b' ').collect();
    if parts.len() != 3 || parts[0].is_empty() || !parts[0].iter().all(|&b| is_tchar(b)) {
        return Err(format!("request line {:?}", lossy(request_line)));
    }
    let version = parts[2];
    if !(version == b"HTTP/1.1" || version == b"HTTP/1.0") {
        return Err(format!("version {:?}", lossy(version)));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let Some((l, next)) = line(buf, at, parsing)? else {
            return Ok(Step::More);
        };
        at = next;
        if l.is_empty() {
            break;
        }
        if l[0] == b' ' || l[0] == b'\t' {
            if strict {
                return Err(format!("obs-fold {:?}", lossy(l)));
            }
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1
                    .push_str(String::from_utf8_lossy(l.trim_ascii()).as_ref());
            }
            continue;
        }
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            return Err(format!("field without colon {:?}", lossy(l)));
        };
        let (name, value) = (&l[..colon], l[colon + 1..].trim_ascii());
        let name = if strict {
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(format!("field name {:?}", lossy(name)));
            }
            name
        } else {
            name.trim_ascii()
        };
        if strict && value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!("control byte in {:?}", lossy(value)));
        }
        headers.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    let all = |n: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let cls = all("content-length");
    let tes = all("transfer-encoding");
    let body = if strict {
        if !cls.is_empty() && !tes.is_empty() {
            return Err("Content-Length with Transfer-Encoding".into());
        }
        if !tes.is_empty() {
            if tes.len() != 1 || !tes[0].eq_ignore_ascii_case("chunked") || version == b"HTTP/1.0" {
                return Err(format!("Transfer-Encoding {tes:?}"));
            }
            Framing::Chunked
        } else if !cls.is_empty() {
            if cls.len() != 1 || cls[0].is_empty() || !cls[0].bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("Content-Length {cls:?}"));
            }
            Framing::Length(cls[0].parse().map_err(|_| "Content-Length overflow")?)
        } else {
            Framing::Length(0)
        }
    } else if let Some(cl) = cls.first() {
        // parseInt: leading digits, the rest ignored.
        let digits: String = cl.chars().take_while(|c| c.is_ascii_digit()).collect();
        Framing::Length(digits.parse().unwrap_or(0))
    } else if tes
        .iter()
        .any(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked
    } else {
        Framing::Length(0)
    };
    let (body, end) = match body {
        Framing::Length(n) => {
            if buf.len() - at < n {
                return Ok(Step::More);
            }
            (buf[at..at + n].to_vec(), at + n)
        }
        Framing::Chunked => match chunked(buf, at, parsing)? {
            Step::Done(d) => d,
            Step::More => return Ok(Step::More),
        },
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(Step::Done((
        Parsed {
            conn: 0,
            method: text(parts[0]),
            target: text(parts[1]),
            headers,
            body,
        },
        end,
    )))
}

enum Framing {
    Length(usize),
    Chunked,
}

/// A chunked body from `at`: (decoded body, index after the trailers).
fn chunked(buf: &[u8], mut at: usize, parsing: Parsing) -> Result<Step<(Vec<u8>, usize)>, Fail> {
    let strict = parsing == Parsing::Strict;
    let mut body = Vec::new();
    loop {
        let Some((l, next)) = line(buf, at, parsing)? else {
            return Ok(Step::More);
        };
        let hex_len = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let (size, rest) = l.split_at(hex_len);
        if strict {
            let ext_ok = rest.is_empty() || chunk_ext_ok(rest);
            if size.is_empty() || size.len() > 16 || !ext_ok {
                return Err(format!("chunk line {:?}", lossy(l)));
            }
        }
        let size = usize::from_str_radix(std::str::from_utf8(size).unwrap_or("0"), 16).unwrap_or(0);
        at = next;
        if size == 0 {
            // Trailer fields up to an empty line.
            loop {
                let Some((t, next)) = line(buf, at, parsing)? else {
                    return Ok(Step::More);
                };
                at = next;
                if t.is_empty() {
                    return Ok(Step::Done((body, at)));
                }
                if strict && !t.contains(&b':') {
                    return Err(format!("trailer {:?}", lossy(t)));
                }
            }
        }
        if buf.len() < at + size {
            return Ok(Step::More);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size;
        let Some((l, next)) = line(buf, at, parsing)? else {
            return Ok(Step::More);
        };
        if strict && !l.is_empty() {
            return Err(format!("chunk data overrun {:?}", lossy(l)));
        }
        at = next;
    }
}

/// RFC 9112 section 7.1.1: `*( BWS ";" BWS name [ BWS "=" BWS value ] )`,
/// value a token or a quoted string.
fn chunk_ext_ok(mut s: &[u8]) -> bool {
    let bws = |s: &mut &[u8]| {
        while let [b' ' | b'\t', rest @ ..] = *s {
            *s = rest;
        }
    };
    let token = |s: &mut &[u8]| {
        let n = s.iter().take_while(|&&b| is_tchar(b)).count();
        *s = &s[n..];
        n > 0
    };
    while !s.is_empty() {
        bws(&mut s);
        let [b';', rest @ ..] = s else {
            return false;
        };
        s = rest;
        bws(&mut s);
        if !token(&mut s) {
            return false;
        }
        bws(&mut s);
        if let [b'=', rest @ ..] = s {
            s = rest;
            bws(&mut s);
            if let [b'"', rest @ ..] = s {
                let mut r = rest;
                loop {
                    match r {
                        [b'"', rest @ ..] => {
                            s = rest;
                            break;
                        }
                        [b'\\', c, rest @ ..] if *c >= 0x20 || *c == b'\t' => r = rest,
                        [c, rest @ ..] if (*c >= 0x20 && *c != 0x7f) || *c == b'\t' => r = rest,
                        _ => return false,
                    }
                }
            } else if !token(&mut s) {
                return false;
            }
        }
    }
    true
}

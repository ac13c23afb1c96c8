//! Access log formats: a template with `{variable}` placeholders, parsed once
//! when the configuration loads, rendered for every request.

use super::escape;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local};
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The vhost combined format of PRODUCT.md.
pub(crate) const STANDARD: &str = "{request_hostname} {client_ip} - - [{completion_date:%d/%b/%Y:%H:%M:%S %z}] \"{request}\" {status} {response_size} \"{referer}\" \"{user_agent}\"";
/// Standard followed by ` {protocol} {duration}`.
pub(crate) const ADVANCED: &str = "{request_hostname} {client_ip} - - [{completion_date:%d/%b/%Y:%H:%M:%S %z}] \"{request}\" {status} {response_size} \"{referer}\" \"{user_agent}\" {protocol} {duration}";
/// Default date pattern for `completion_date` / `request_time` without one.
pub(crate) const DEFAULT_DATE: &str = "%d/%b/%Y:%H:%M:%S %z";

pub(crate) const VARIABLES: &[&str] = &[
    "client_ip",
    "completion_date",
    "duration",
    "peer_ip",
    "protocol",
    "referer",
    "request",
    "request_header:NAME",
    "request_hostname",
    "request_id",
    "request_method",
    "request_path",
    "request_protocol",
    "request_time",
    "response_header:NAME",
    "response_size",
    "site",
    "ssl_version",
    "status",
    "user_agent",
];

/// Everything a log line can say about one request.
pub struct Record<'a> {
    pub method: &'a [u8],
    /// The request target as received (not percent-decoded).
    pub raw_path: &'a [u8],
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub request_protocol: &'static str,
    pub request_headers: Option<&'a http::HeaderMap>,
    pub response_headers: Option<&'a http::HeaderMap>,
    /// 0 when no response was sent.
    pub status: u16,
    pub peer_ip: Option<IpAddr>,
    pub client_ip: Option<IpAddr>,
    /// Normalized host name the request was routed by.
    pub host: Option<&'a str>,
    pub request_id: &'a str,
    pub site: &'a str,
    /// `http`, `https` or `ws`.
    pub scheme: &'static str,
    /// `TLSv1.3`, ... (None: plain HTTP).
    pub ssl_version: Option<&'a str>,
    pub started: SystemTime,
    pub completed: SystemTime,
    pub duration: Duration,
    pub body_bytes: u64,
}

/// A parsed date pattern. `per_second`: it has no sub-second field, so one
/// formatting serves a whole second (cached per thread).
#[derive(Debug, Clone)]
struct DateFormat {
    items: Vec<Item<'static>>,
    per_second: bool,
    id: usize,
}

#[derive(Debug, Clone)]
enum Var {
    ClientIp,
    CompletionDate(DateFormat),
    Duration,
    PeerIp,
    Protocol,
    Referer,
    Request,
    RequestHeader(http::HeaderName),
    RequestHostname,
    RequestId,
    RequestMethod,
    RequestPath,
    RequestProtocol,
    RequestTime(DateFormat),
    ResponseHeader(http::HeaderName),
    ResponseSize,
    Site,
    SslVersion,
    Status,
    UserAgent,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(Vec<u8>),
    Var(Var),
}

/// A parsed format.
#[derive(Debug, Clone)]
pub struct Format(Kind);

#[derive(Debug, Clone)]
enum Kind {
    Template(Vec<Segment>),
    /// One JSON object per line with fixed field names.
    Json,
}

/// A format error: what, and the 1-based character column in the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub column: usize,
    pub message: String,
}

fn date_format(pattern: &str, column: usize) -> Result<DateFormat, FormatError> {
    use chrono::format::{Fixed, Numeric};
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
    let items = date_items(pattern, column)?;
    let per_second = !items.iter().any(|i| {
        matches!(
            i,
            Item::Numeric(Numeric::Nanosecond, _)
                | Item::Fixed(
                    Fixed::Nanosecond
                        | Fixed::Nanosecond3
                        | Fixed::Nanosecond6
                        | Fixed::Nanosecond9
                        | Fixed::Internal(_)
                )
        )
    });
    Ok(DateFormat {
        items,
        per_second,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
    })
}

fn date_items(pattern: &str, column: usize) -> Result<Vec<Item<'static>>, FormatError> {
    let items = StrftimeItems::new(pattern)
        .parse_to_owned()
        .map_err(|_| FormatError {
            column,
            message: format!("invalid date pattern {pattern:?}"),
        })?;
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(FormatError {
            column,
            message: format!("invalid date pattern {pattern:?}"),
        });
    }
    Ok(items)
}

fn header_name(name: &str, column: usize) -> Result<http::HeaderName, FormatError> {
    http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| FormatError {
        column,
        message: format!("invalid header name {name:?}"),
    })
}

fn variable(name: &str, arg: Option<&str>, column: usize) -> Result<Var, FormatError> {
    let no_arg = |v: Var| match arg {
        None => Ok(v),
        Some(_) => Err(FormatError {
            column,
            message: format!("variable `{name}` takes no argument"),
        }),
    };
    let date = |arg: Option<&str>| date_format(arg.unwrap_or(DEFAULT_DATE), column);
    let header = |arg: Option<&str>| match arg {
        Some(h) if !h.trim().is_empty() => header_name(h, column),
        _ => Err(FormatError {
            column,
            message: format!("variable `{name}` needs a header name, e.g. {{{name}:x-request-id}}"),
        }),
    };
    match name {
        "client_ip" => no_arg(Var::ClientIp),
        "completion_date" => Ok(Var::CompletionDate(date(arg)?)),
        "duration" => no_arg(Var::Duration),
        "peer_ip" => no_arg(Var::PeerIp),
        "protocol" => no_arg(Var::Protocol),
        "referer" => no_arg(Var::Referer),
        "request" => no_arg(Var::Request),
        "request_header" => Ok(Var::RequestHeader(header(arg)?)),
        "request_hostname" => no_arg(Var::RequestHostname),
        "request_id" => no_arg(Var::RequestId),
        "request_method" => no_arg(Var::RequestMethod),
        "request_path" => no_arg(Var::RequestPath),
        "request_protocol" => no_arg(Var::RequestProtocol),
        "request_time" => Ok(Var::RequestTime(date(arg)?)),
        "response_header" => Ok(Var::ResponseHeader(header(arg)?)),
        "response_size" => no_arg(Var::ResponseSize),
        "site" => no_arg(Var::Site),
        "ssl_version" => no_arg(Var::SslVersion),
        "status" => no_arg(Var::Status),
        "user_agent" => no_arg(Var::UserAgent),
        _ => Err(FormatError {
            column,
            message: format!("unknown variable `{name}`; known: {}", VARIABLES.join(", ")),
        }),
    }
}

impl Format {
    /// The response fields a line of this format shows
    /// (`response_header:NAME`), each once.
    pub fn response_fields(&self) -> Vec<http::HeaderName> {
        let mut names: Vec<http::HeaderName> = Vec::new();
        if let Kind::Template(segments) = &self.0 {
            for s in segments {
                if let Segment::Var(Var::ResponseHeader(name)) = s
                    && !names.contains(name)
                {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// `standard`, `advanced`, `json`, or a template.
    pub fn parse(spec: &str) -> Result<Format, FormatError> {
        match spec {
            "standard" => Self::template(STANDARD),
            "advanced" => Self::template(ADVANCED),
            "json" => Ok(Format(Kind::Json)),
            t => Self::template(t),
        }
    }

    fn template(t: &str) -> Result<Format, FormatError> {
        let chars: Vec<(usize, char)> = t.char_indices().collect();
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < chars.len() {
            let (_, c) = chars[i];
            let column = i + 1;
            match c {
                '{' if chars.get(i + 1).map(|x| x.1) == Some('{') => {
                    lit.push('{');
                    i += 2;
                }
                '}' if chars.get(i + 1).map(|x| x.1) == Some('}') => {
                    lit.push('}');
                    i += 2;
                }
                '{' => {
                    // {name} | {name:arg} | {name:{arg}}
                    let mut j = i + 1;
                    let mut name = String::new();
                    while j < chars.len() && chars[j].1 != '}' && chars[j].1 != ':' {
                        name.push(chars[j].1);
                        j += 1;
                    }
                    let mut arg = None;
                    if j < chars.len() && chars[j].1 == ':' {
                        j += 1;
                        let mut a = String::new();
                        if j < chars.len() && chars[j].1 == '{' {
                            // Older date syntax: the pattern in its own braces.
                            j += 1;
                            while j < chars.len() && chars[j].1 != '}' {
                                a.push(chars[j].1);
                                j += 1;
                            }
                            if j >= chars.len() {
                                return Err(FormatError {
                                    column,
                                    message: "unclosed `{` in date pattern".into(),
                                });
                            }
                            j += 1; // the pattern's `}`
                        } else {
                            while j < chars.len() && chars[j].1 != '}' {
                                a.push(chars[j].1);
                                j += 1;
                            }
                        }
                        arg = Some(a);
                    }
                    if j >= chars.len() || chars[j].1 != '}' {
                        return Err(FormatError {
                            column,
                            message: "unclosed `{`: write `{{` for a literal brace".into(),
                        });
                    }
                    if !lit.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut lit).into_bytes()));
                    }
                    segments.push(Segment::Var(variable(name.trim(), arg.as_deref(), column)?));
                    i = j + 1;
                }
                c => {
                    lit.push(c);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            segments.push(Segment::Literal(lit.into_bytes()));
        }
        Ok(Format(Kind::Template(segments)))
    }

    /// Append one line (with its newline) for `r` to `out`.
    pub fn render(&self, r: &Record, out: &mut Vec<u8>) {
        match &self.0 {
            Kind::Template(segments) => {
                for s in segments {
                    match s {
                        Segment::Literal(l) => out.extend_from_slice(l),
                        Segment::Var(v) => render_var(v, r, out),
                    }
                }
            }
            Kind::Json => render_json(r, out),
        }
        out.push(b'\n');
    }
}

fn dash(out: &mut Vec<u8>) {
    out.push(b'-');
}

fn header_values<'a>(
    map: Option<&'a http::HeaderMap>,
    name: &http::HeaderName,
) -> Option<&'a [u8]> {
    map.and_then(|m| m.get(name)).map(|v| v.as_bytes())
}

fn client_text(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => escape::text(out, v),
        _ => dash(out),
    }
}

fn date(out: &mut Vec<u8>, t: SystemTime, f: &DateFormat) {
    use std::cell::RefCell;
    thread_local! {
        /// (format id, unix second) -> formatted date, a few entries.
        static CACHE: RefCell<Vec<(usize, u64, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    }
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(u64::MAX, |d| d.as_secs());
    let format_now = |buf: &mut Vec<u8>| {
        let dt: DateTime<Local> = t.into();
        let _ = write!(buf, "{}", dt.format_with_items(f.items.iter()));
    };
    if !f.per_second || secs == u64::MAX {
        format_now(out);
        return;
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, _, s)) = c.iter().find(|(id, s, _)| *id == f.id && *s == secs) {
            out.extend_from_slice(s);
            return;
        }
        let mut buf = Vec::with_capacity(32);
        format_now(&mut buf);
        out.extend_from_slice(&buf);
        if let Some(slot) = c.iter_mut().find(|(id, _, _)| *id == f.id) {
            *slot = (f.id, secs, buf);
        } else if c.len() < 8 {
            c.push((f.id, secs, buf));
        }
    });
}

/// Decimal digits without going through `fmt`.
fn uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::decimal::Decimal::new(n).as_bytes());
}

fn ip(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        Some(IpAddr::V4(v4)) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                uint(out, u64::from(*o));
            }
        }
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => dash(out),
    }
}

/// Seconds with six decimals, e.g. `0.128109`.
fn seconds(out: &mut Vec<u8>, d: Duration) {
    uint(out, d.as_secs());
    out.push(b'.');
    let micros = d.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut m = micros;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&digits);
}

fn request_line(r: &Record, out: &mut Vec<u8>) {
    escape::text(out, r.method);
    out.push(b' ');
    escape::text(out, r.raw_path);
    out.push(b' ');
    out.extend_from_slice(r.request_protocol.as_bytes());
}

fn render_var(v: &Var, r: &Record, out: &mut Vec<u8>) {
    match v {
        Var::ClientIp => ip(out, r.client_ip),
        Var::PeerIp => ip(out, r.peer_ip),
        Var::CompletionDate(f) => date(out, r.completed, f),
        Var::RequestTime(f) => date(out, r.started, f),
        Var::Duration => seconds(out, r.duration),
        Var::Protocol => out.extend_from_slice(r.scheme.as_bytes()),
        Var::Referer => client_text(
            out,
            header_values(r.request_headers, &http::header::REFERER),
        ),
        Var::UserAgent => client_text(
            out,
            header_values(r.request_headers, &http::header::USER_AGENT),
        ),
        Var::Request => {
            if r.method.is_empty() {
                dash(out)
            } else {
                request_line(r, out)
            }
        }
        Var::RequestHeader(name) => {
            if name.as_str() == crate::request_id::HEADER && !r.request_id.is_empty() {
                // The id edgeward used, whether it came in or was made here.
                escape::text(out, r.request_id.as_bytes())
            } else {
                client_text(out, header_values(r.request_headers, name))
            }
        }
        Var::ResponseHeader(name) => client_text(out, header_values(r.response_headers, name)),
        Var::RequestHostname => client_text(out, r.host.map(str::as_bytes)),
        Var::RequestId => client_text(out, Some(r.request_id.as_bytes())),
        Var::RequestMethod => client_text(out, Some(r.method)),
        Var::RequestPath => client_text(out, Some(r.raw_path)),
        Var::RequestProtocol => out.extend_from_slice(r.request_protocol.as_bytes()),
        Var::ResponseSize => uint(out, r.body_bytes),
        Var::Site => client_text(out, Some(r.site.as_bytes())),
        Var::SslVersion => match r.ssl_version {
            Some(v) => out.extend_from_slice(v.as_bytes()),
            None => dash(out),
        },
        Var::Status => uint(out, u64::from(r.status)),
    }
}

fn json_str(out: &mut Vec<u8>, key: &str, v: Option<&[u8]>) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    match v {
        Some(v) => {
            out.push(b'"');
            escape::json(out, v);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn render_json(r: &Record, out: &mut Vec<u8>) {
    let completed: DateTime<Local> = r.completed.into();
    let _ = write!(
        out,
        "{{\"time\":\"{}\",",
        completed.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
    );
    json_str(out, "site", Some(r.site.as_bytes()));
    out.push(b',');
    json_str(out, "request_id", Some(r.request_id.as_bytes()));
    out.push(b',');
    json_str(out, "host", r.host.map(str::as_bytes));
    out.push(b',');
    let client = r.client_ip.map(|i| i.to_string());
    json_str(out, "client_ip", client.as_deref().map(str::as_bytes));
    out.push(b',');
    let peer = r.peer_ip.map(|i| i.to_string());
    json_str(out, "peer_ip", peer.as_deref().map(str::as_bytes));
    out.push(b',');
    json_str(out, "method", Some(r.method));
    out.push(b',');
    json_str(out, "path", Some(r.raw_path));
    out.push(b',');
    json_str(out, "protocol", Some(r.request_protocol.as_bytes()));
    out.push(b',');
    json_str(out, "scheme", Some(r.scheme.as_bytes()));
    let _ = write!(
        out,
        ",\"status\":{},\"size\":{},\"duration\":{:.6},",
        r.status,
        r.body_bytes,
        r.duration.as_secs_f64()
    );
    json_str(
        out,
        "referer",
        header_values(r.request_headers, &http::header::REFERER),
    );
    out.push(b',');
    json_str(
        out,
        "user_agent",
        header_values(r.request_headers, &http::header::USER_AGENT),
    );
    out.push(b'}');
}

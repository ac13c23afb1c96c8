//! TLS for tests: certificates made here (P-256 or RSA keys, self-signed,
//! any validity window) written to temp files, and a real TLS client
//! (OpenSSL) to handshake with edgeward and see what it presented. HTTP over
//! TLS goes through curl, a real client with HTTP/2.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode, SslVersion};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A self-signed certificate and its key, written as PEM files.
pub(crate) struct TestCert {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// The common name, to tell certificates apart in a handshake.
    pub(crate) cn: String,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn build(cn: &str, names: &[&str], key: &PKey<Private>, from: i64, until: i64) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(from).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(until).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    let mut san = SubjectAlternativeName::new();
    for n in names {
        san.dns(n);
    }
    let san = san.build(&b.x509v3_context(None, None)).unwrap();
    b.append_extension(san).unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

impl TestCert {
    /// A certificate for `names` valid from an hour ago for a day, in
    /// `dir/<file>.pem` and `dir/<file>.key`.
    pub(crate) fn new(dir: &Path, file: &str, cn: &str, names: &[&str]) -> TestCert {
        Self::valid(dir, file, cn, names, now() - 3600, now() + 86_400)
    }

    /// A certificate with an RSA 2048 key.
    pub(crate) fn rsa(dir: &Path, file: &str, cn: &str, names: &[&str]) -> TestCert {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        Self::write(
            dir,
            file,
            cn,
            &key,
            &build(cn, names, &key, now() - 3600, now() + 86_400),
        )
    }

    fn write(dir: &Path, file: &str, cn: &str, key: &PKey<Private>, cert: &X509) -> TestCert {
        let tc = TestCert {
            cert: dir.join(format!("{file}.pem")),
            key: dir.join(format!("{file}.key")),
            cn: cn.to_string(),
        };
        std::fs::write(&tc.cert, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&tc.key, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        tc
    }

    /// The same with its own validity window (Unix seconds).
    pub(crate) fn valid(
        dir: &Path,
        file: &str,
        cn: &str,
        names: &[&str],
        from: i64,
        until: i64,
    ) -> TestCert {
        let key = p256();
        Self::write(dir, file, cn, &key, &build(cn, names, &key, from, until))
    }

    /// `{ certificate: ..., key: ... }` for the configuration.
    pub(crate) fn flow(&self) -> String {
        format!(
            "{{ certificate: {}, key: {} }}",
            super::quote(&self.cert.display().to_string()),
            super::quote(&self.key.display().to_string())
        )
    }
}

/// What a handshake showed.
#[derive(Debug)]
pub(crate) struct Handshake {
    /// The common name of the certificate edgeward presented.
    pub(crate) cn: String,
    pub(crate) version: String,
    pub(crate) alpn: Option<String>,
}

/// Handshake with edgeward's HTTPS port, with `sni` (None: no SNI), at most
/// `max` (e.g. TLS 1.1 to see it refused) and offering `alpn` protocols.
pub(crate) fn handshake(
    port: u16,
    sni: Option<&str>,
    max: Option<SslVersion>,
    alpn: &[&str],
) -> Result<Handshake, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    if let Some(v) = max {
        // Old versions need OpenSSL's lowest security level to be offered.
        b.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
        b.set_min_proto_version(Some(SslVersion::TLS1)).unwrap();
        b.set_max_proto_version(Some(v)).unwrap();
    }
    if !alpn.is_empty() {
        let mut wire = Vec::new();
        for p in alpn {
            wire.push(p.len() as u8);
            wire.extend_from_slice(p.as_bytes());
        }
        b.set_alpn_protos(&wire).unwrap();
    }
    let connector = b.build();
    let mut config = connector.configure().unwrap();
    config.set_verify_hostname(false);
    config.set_use_server_name_indication(sni.is_some());
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let stream = config
        .connect(sni.unwrap_or("ignored.invalid"), tcp)
        .map_err(|e| e.to_string())?;
    let ssl = stream.ssl();
    if ssl.peer_certificate().is_none() {
        return Err("no certificate".into());
    }
    Ok(Handshake {
        cn: peer_cn(&stream),
        version: ssl.version_str().to_string(),
        alpn: ssl
            .selected_alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
    })
}

/// The common name of the certificate the server presented ("" if none).
pub(crate) fn peer_cn(s: &SslStream<TcpStream>) -> String {
    s.ssl()
        .peer_certificate()
        .and_then(|c| {
            c.subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .next()
                .and_then(|e| e.data().to_string().ok())
        })
        .unwrap_or_default()
}

/// A TLS connection to edgeward, handshake done (blocking I/O).
pub(crate) fn tls_connect(port: u16, sni: &str) -> Result<SslStream<TcpStream>, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let connector = b.build();
    let mut config = connector.configure().unwrap();
    config.set_verify_hostname(false);
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    config.connect(sni, tcp).map_err(|e| e.to_string())
}

/// Send one raw HTTP/1.1 request with `Connection: close` and read the
/// response to its end.
pub(crate) fn https_raw(s: &mut SslStream<TcpStream>, request: &str) -> Result<String, String> {
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// What curl got: status, header lines, body.
#[derive(Debug)]
pub(crate) struct CurlReply {
    pub(crate) status: u16,
    pub(crate) http_version: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl CurlReply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request with curl to `https://host:port/path` (resolved to
/// 127.0.0.1), trusting `ca`; `extra` are more curl arguments.
pub(crate) async fn curl(
    port: u16,
    host: &str,
    path: &str,
    ca: &Path,
    extra: &[&str],
) -> Result<CurlReply, String> {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(ca)
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .await
        .map_err(|e| format!("curl: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "curl failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (status, http_version) = stdout.split_once(' ').unwrap_or((&stdout, ""));
    let status = status.parse().unwrap_or(0);
    let http_version = http_version.to_string();
    let body = std::fs::read_to_string(&body).unwrap_or_default();
    let headers = std::fs::read_to_string(&head)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(CurlReply {
        status,
        http_version,
        headers,
        body,
    })
}

/// One HTTPS request to edgeward (a new connection, `sni`), offering
/// `session` for resumption and at most `max`. Returns whether the session
/// was resumed and the new session the server issued if any (read after
/// the response, so TLS 1.3 tickets have arrived).
pub(crate) fn resume(
    port: u16,
    sni: &str,
    max: SslVersion,
    session: Option<&openssl::ssl::SslSession>,
) -> Result<(bool, Option<openssl::ssl::SslSession>), String> {
    use openssl::ssl::{Ssl, SslContext, SslSessionCacheMode};
    use std::sync::{Arc, Mutex};
    // Kept as bytes, as a client stores it: the session object itself is
    // marked not resumable when the connection ends without close_notify.
    let issued: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let mut ctx = SslContext::builder(SslMethod::tls_client()).unwrap();
    ctx.set_verify(SslVerifyMode::NONE);
    ctx.set_max_proto_version(Some(max)).unwrap();
    ctx.set_session_cache_mode(SslSessionCacheMode::CLIENT);
    let sink = issued.clone();
    ctx.set_new_session_callback(move |_, s| *sink.lock().unwrap() = s.to_der().ok());
    let ctx = ctx.build();
    let mut ssl = Ssl::new(&ctx).unwrap();
    ssl.set_hostname(sni).unwrap();
    if let Some(s) = session {
        // SAFETY: the session was issued for this same server and client
        // configuration (a test helper; see SslRef::set_session).
        unsafe { ssl.set_session(s) }.unwrap();
    }
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = ssl.connect(tcp).map_err(|e| e.to_string())?;
    let reused = s.ssl().session_reused();
    https_raw(
        &mut s,
        &format!("GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"),
    )?;
    let got = issued.lock().unwrap().take();
    Ok((
        reused,
        got.and_then(|der| openssl::ssl::SslSession::from_der(&der).ok()),
    ))
}

/// A client that sends its ClientHello and then goes away without a word
/// (an I/O error on its first read: no alert).
pub(crate) fn hello_and_hang_up(port: u16, sni: &str) {
    struct WriteOnly(TcpStream);
    impl Read for WriteOnly {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::ConnectionAborted.into())
        }
    }
    impl Write for WriteOnly {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let connector = SslConnector::builder(SslMethod::tls_client())
        .unwrap()
        .build();
    let r = connector.connect(sni, WriteOnly(tcp));
    assert!(r.is_err(), "a handshake without reading cannot finish");
}

/// A client that checks edgeward's certificate against the system's roots
/// (which never include a test certificate): it ends the handshake with a
/// fatal alert of its own.
pub(crate) fn distrusting_handshake(port: u16, sni: &str) -> Result<(), String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    b.build()
        .connect(sni, tcp)
        .map(drop)
        .map_err(|e| e.to_string())
}

//! A real ACME CA for tests: Let's Encrypt's Pebble (Debian's `pebble`
//! package) with `pebble-challtestsrv` as its DNS (every name is
//! 127.0.0.1), on ephemeral loopback ports. Pebble validates HTTP-01 at
//! 127.0.0.1:`http_port` (edgeward's plain listener); its own HTTPS
//! certificate is made here, signed by a root the test hands to edgeward
//! as `tls.acme.ca_roots`.

use super::{DEADLINE, eventually, free_ports};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;

pub(crate) struct Pebble {
    pub(crate) dir: tempfile::TempDir,
    /// The root that signed Pebble's HTTPS certificate (for `ca_roots`).
    pub(crate) ca_roots: PathBuf,
    pub(crate) port: u16,
    pub(crate) http_port: u16,
    /// challtestsrv's management port (set by `start`).
    dns_management: u16,
    children: Vec<Child>,
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>, ca: bool) -> X509 {
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
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    } else {
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())
        .unwrap();
    b.build()
}

impl Pebble {
    /// Ports for a CA that will validate at `http_port`, not started yet:
    /// the directory URL is known before edgeward starts.
    pub(crate) fn new(http_port: u16) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let root_key = key();
        let root = cert("edgeward test root", &root_key, None, true);
        let leaf_key = key();
        let leaf = cert("localhost", &leaf_key, Some((&root, &root_key)), false);
        let ca_roots = dir.path().join("roots.pem");
        std::fs::write(&ca_roots, root.to_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.to_pem().unwrap()).unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            leaf_key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        let [port] = free_ports();
        Pebble {
            dir,
            ca_roots,
            port,
            http_port,
            dns_management: 0,
            children: Vec::new(),
        }
    }

    /// `tls.acme` for edgeward: this directory, trusting this CA.
    pub(crate) fn acme_flow(&self) -> String {
        format!(
            "{{ directory: \"{}\", email: \"ops@example.org\", ca_roots: {} }}",
            self.directory(),
            super::quote(&self.ca_roots.display().to_string())
        )
    }

    pub(crate) fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Start challtestsrv and Pebble; wait until the directory answers.
    pub(crate) async fn start(&mut self) {
        let [dns, mgmt, pebble_mgmt, tls_port] = free_ports();
        let log = |name: &str| std::fs::File::create(self.dir.path().join(name)).unwrap();
        let chall = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{mgmt}")])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (apt install pebble)");
        self.children.push(chall);
        self.dns_management = mgmt;
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{}", self.port),
                "managementListenAddress": format!("127.0.0.1:{pebble_mgmt}"),
                "certificate": self.dir.path().join("cert.pem"),
                "privateKey": self.dir.path().join("key.pem"),
                "httpPort": self.http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = self.dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (apt install pebble)");
        self.children.push(pebble);
        let port = self.port;
        eventually(DEADLINE, "pebble listening", || async move {
            TcpStream::connect(("127.0.0.1", port)).await.ok()
        })
        .await;
    }

    /// Make the CA's DNS answer `ip` for `host` (instead of 127.0.0.1).
    pub(crate) async fn resolve(&self, host: &str, ip: &str) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = serde_json::json!({ "host": host, "addresses": [ip] }).to_string();
        let port = self.dns_management;
        let mut s = eventually(DEADLINE, "challtestsrv management", || async move {
            TcpStream::connect(("127.0.0.1", port)).await.ok()
        })
        .await;
        let req = format!(
            "POST /add-a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "add-a: {out}");
    }

    /// Stop both programs (the CA is down from now on).
    pub(crate) fn stop(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What Pebble logged (validations, orders).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.path().join("pebble.err")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The leaf edgeward presents for `sni`: (SHA-256 fingerprint, issuer CN).
pub(crate) fn served_certificate(port: u16, sni: &str) -> Result<(String, String), String> {
    let s = super::tls_connect(port, sni)?;
    let c = s.ssl().peer_certificate().ok_or("no certificate")?;
    let fp = c
        .digest(MessageDigest::sha256())
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let issuer = c
        .issuer_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_default();
    Ok((fp, issuer))
}

/// Wait until `path` (a sites log) has `needle` at least `count` times.
pub(crate) async fn wait_file(
    path: &Path,
    needle: &str,
    count: usize,
    deadline: Duration,
) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return text;
        }
        if start.elapsed() > deadline {
            // <dir>/alice/sites/x.log -> <dir>/edgeward.log
            let diag = path
                .ancestors()
                .nth(3)
                .map(|d| std::fs::read_to_string(d.join("edgeward.log")).unwrap_or_default())
                .unwrap_or_default();
            panic!(
                "timed out waiting for {needle:?} x{count} in {}:\n{text}\n--- edgeward.log:\n{diag}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One Redis command's whole reply, raw (RESP), e.g. a bulk string.
pub(crate) async fn redis_raw(port: u16, args: &[&str]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || reply_complete(&buf) {
            return buf;
        }
    }
}

fn reply_complete(buf: &[u8]) -> bool {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if buf[0] != b'$' {
        return true;
    }
    let len: i64 = std::str::from_utf8(&buf[1..eol]).unwrap().parse().unwrap();
    len < 0 || buf.len() >= eol + 2 + len as usize + 2
}

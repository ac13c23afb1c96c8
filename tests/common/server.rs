//! The real `edgeward` binary: started on a configuration, signalled,
//! reloaded, stopped; and `edgeward check`.

use super::{Conf, DEADLINE, eventually, fill, free_ports, request};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_edgeward")
}

/// Whether process `pid` holds the TCP socket listening on 127.0.0.1 or a
/// wildcard address at `port` (Linux: /proc/net/tcp{,6} and the process's
/// file descriptors).
pub(crate) fn listens_on(pid: u32, port: u16) -> bool {
    let port_hex = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode.
            if f.len() > 9 && f[1].ends_with(&port_hex) && f[3] == "0A" {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

pub(crate) struct Edgeward {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config_path: PathBuf,
    pub(crate) port: u16,
    pub(crate) admin_port: u16,
    /// For `{tls}` in the configuration (the HTTPS listener, if any).
    pub(crate) tls_port: u16,
    pub(crate) log_path: PathBuf,
    child: Option<Child>,
}

impl Edgeward {
    /// Start the real binary on `conf`, and wait until it serves.
    pub(crate) async fn start(conf: &Conf) -> Edgeward {
        Self::start_with_env(conf, &[]).await
    }

    pub(crate) async fn start_with_env(conf: &Conf, env: &[(&str, &str)]) -> Edgeward {
        Self::start_at(conf, env, None).await
    }

    /// `start_with_env` with the plain listener on `port` when given (a
    /// port another program must know first, e.g. the ACME CA's HTTP-01
    /// port).
    pub(crate) async fn start_at(
        conf: &Conf,
        env: &[(&str, &str)],
        fixed_port: Option<u16>,
    ) -> Edgeward {
        let template = conf.to_string();
        let mut dir = tempfile::tempdir().expect("temp dir");
        // A port picked here can be taken by someone else before edgeward
        // binds it: try again with fresh ports in that case.
        for _attempt in 0..5 {
            let [mut port, admin_port, tls_port] = free_ports();
            if let Some(p) = fixed_port {
                port = p;
            }
            let config_path = dir.path().join("edgeward.yaml");
            let log_path = dir.path().join("edgeward.log");
            let mut ew = Edgeward {
                dir,
                config_path,
                port,
                admin_port,
                tls_port,
                log_path,
                child: None,
            };
            ew.write_text(&template);
            let admin = template.contains("{admin}");
            let log = std::fs::File::create(&ew.log_path).unwrap();
            let mut cmd = Command::new(binary());
            cmd.args(["run", "-c"])
                .arg(&ew.config_path)
                .current_dir(ew.dir.path())
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            for (k, v) in env {
                cmd.env(k, v);
            }
            ew.child = Some(cmd.spawn().expect("spawn edgeward"));
            match ew.wait_ready(admin).await {
                Ok(()) => return ew,
                Err(log) if log.contains("Address already in use") => {
                    dir = ew.take_dir();
                    continue;
                }
                Err(log) => panic!("edgeward did not start:\n{log}"),
            }
        }
        panic!("edgeward could not find free ports in 5 attempts");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Polls (every 10 ms, up to DEADLINE) until the process listens, on
    /// the admin port too when `admin`.
    async fn wait_ready(&mut self, admin: bool) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            // The admin listener is a service of its own: when its port was
            // taken between edgeward's check and Pingora's bind (e.g. as the
            // local port of another test's connection), Pingora logs it and
            // serves without it.
            let log = self.log();
            if log.contains("Failed to build listeners") {
                return Err(log);
            }
            // Listening, and the listener is edgeward's: a port picked by
            // `free_port` may have been taken meanwhile by another test's
            // server (which would answer in edgeward's place until edgeward
            // gives up with "Address already in use"). Checked before the
            // connect, so that the probe never reaches that other server
            // (a connection it would count as a request).
            if listens_on(self.pid(), self.port)
                && (!admin || listens_on(self.pid(), self.admin_port))
                && TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                return Err(format!("not listening after {DEADLINE:?}\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Everything edgeward logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Wait until the diagnostics log has `needle` at least `count` times.
    pub(crate) async fn wait_log(&self, needle: &str, count: usize) -> String {
        eventually(
            DEADLINE,
            &format!("log line {needle:?} x{count}"),
            || async {
                let log = self.log();
                (log.matches(needle).count() >= count).then_some(log)
            },
        )
        .await
    }

    /// Write the configuration file: `text` with its placeholders filled in.
    fn write_text(&self, text: &str) {
        let text = fill(
            text,
            &format!("127.0.0.1:{}", self.port),
            &format!("127.0.0.1:{}", self.admin_port),
            self.dir.path(),
        )
        .replace("{tls}", &format!("127.0.0.1:{}", self.tls_port));
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Rewrite the file with `conf`, SIGHUP, and wait for the reload's
    /// outcome line.
    pub(crate) async fn reload(&self, conf: &Conf) -> String {
        self.reload_text(&conf.to_string()).await
    }

    /// `reload` of a file given as text (placeholders filled in): for files
    /// that are broken on purpose.
    pub(crate) async fn reload_text(&self, text: &str) -> String {
        let before = self.reload_outcomes();
        self.write_text(text);
        self.signal("HUP");
        eventually(DEADLINE, "reload outcome", || async {
            (self.reload_outcomes() > before).then(|| self.log())
        })
        .await
    }

    fn reload_outcomes(&self) -> usize {
        let log = self.log();
        log.matches("configuration reloaded from").count()
            + log.matches("configuration reload failed").count()
    }

    pub(crate) async fn metrics(&self) -> String {
        request(self.admin_port, "GET", Some("admin"), "/metrics", &[])
            .await
            .expect("GET /metrics")
            .body
    }

    /// Wait for the process to exit (or panic after `deadline`); polls every
    /// 10 ms.
    pub(crate) async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(
                start.elapsed() < deadline,
                "edgeward did not exit in {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Edgeward {
    /// A graceful stop, so that the programs it supervises stop too; SIGKILL
    /// if it takes more than a few seconds (polled every 10 ms: Drop cannot
    /// await).
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(c.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run `edgeward check -c <file with text>`; returns (exit code,
/// stdout+stderr). For files that test the loader, as literal text.
pub(crate) fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgeward.yaml");
    std::fs::write(&path, text).unwrap();
    check_path(&path)
}

/// `check` of `conf`, rendered with fixed listen addresses (127.0.0.1:8080,
/// admin 127.0.0.1:9180) and a temp dir.
pub(crate) fn check_conf(conf: &Conf) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    check(&conf.render("127.0.0.1:8080", "127.0.0.1:9180", dir.path()))
}

pub(crate) fn check_path(path: &Path) -> (i32, String) {
    let out = Command::new(binary())
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run edgeward check");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

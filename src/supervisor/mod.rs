//! The supervisor: tenants' upstream programs (`upstream.command`), started
//! on the first request, stopped when idle, restarted after a crash (with
//! backoff when it keeps crashing), and heard: everything they print goes to
//! the site's sites log, line by line, with the PID.

mod config;
mod output;
mod sys;

use sys::resolve_user;

use crate::logs::SitesLog;
use crate::pages::Page;
pub(crate) use config::{ProgramSpec, RunAs, Settings, program_from_config, settings};
use log::{info, warn};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// The address programs are told to listen on.
pub(crate) const PROGRAM_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Requests that may wait for one program to start; more get 503.
const MAX_WAITING: usize = 100;
/// Between SIGTERM and SIGKILL when stopping a program.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A program that ran this long is healthy: its crash count is reset.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const MINIMAL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why a request could not get its program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartError {
    /// Too many requests already wait for this program (503).
    Busy,
    /// The program keeps crashing; try again after this long (503).
    Backoff(Duration),
    /// It could not be started (502), with the reason.
    Failed(String),
    /// It did not listen within `start_timeout` (504).
    Timeout,
}

impl StartError {
    /// The page a request that could not get its program is answered with.
    pub(crate) fn page(&self) -> Page {
        match self {
            StartError::Busy => Page::new(
                503,
                "The site's application is starting; too many requests are waiting for it.",
            )
            .with("retry-after", "1".to_string()),
            StartError::Backoff(d) => Page::new(
                503,
                "The site's application keeps crashing; edgeward will try to start it again shortly.",
            )
            .with("retry-after", d.as_secs().max(1).to_string()),
            StartError::Failed(_) => Page::new(502, "The site's application failed to start."),
            StartError::Timeout => Page::new(504, "The site's application did not start in time."),
        }
    }
}

/// A request's hold on a running program: while any lease lives the program
/// is not idle.
pub(crate) struct Lease {
    program: Arc<Program>,
    addr: SocketAddr,
}

impl Lease {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self
            .program
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.program.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Running {
    pid: u32,
    port: u16,
    started: Instant,
    /// Set (to a description) when the process has exited.
    exited: watch::Receiver<Option<String>>,
    stopping: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    running: Option<Running>,
    /// Consecutive crashes (failed starts included).
    crashes: u32,
    backoff_until: Option<Instant>,
}

pub(crate) struct Program {
    site: String,
    spec: Arc<ProgramSpec>,
    log: SitesLog,
    state: tokio::sync::Mutex<State>,
    waiting: Semaphore,
    in_flight: AtomicUsize,
    last_used: Mutex<Instant>,
    /// Process group of the running program, for stops outside the runtime.
    pgid: Mutex<Option<u32>>,
    retired: AtomicBool,
}

pub(crate) struct Supervisor {
    programs: Mutex<HashMap<String, Arc<Program>>>,
    ports: Mutex<Ports>,
}

struct Ports {
    range: std::ops::RangeInclusive<u16>,
    used: HashSet<u16>,
    next: usize,
}

pub(crate) static SUPERVISOR: LazyLock<Supervisor> = LazyLock::new(|| Supervisor {
    programs: Mutex::new(HashMap::new()),
    ports: Mutex::new(Ports {
        range: config::DEFAULT_PORTS,
        used: HashSet::new(),
        next: 0,
    }),
});

fn signal_group(pgid: u32, sig: i32) -> bool {
    // Refused (false) for pgid 0 and 1: never edgeward's own group.
    sys::kill_group(pgid, sig).is_ok()
}

/// Whether the leader is still running (not a zombie waiting to be reaped).
fn leader_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Whether any process of the group is left. `reap`: also reap the leader
/// (only when no runtime task waits for it any more), so that a zombie
/// does not count.
fn group_alive(pgid: u32, reap: bool) -> bool {
    if reap {
        // Whether it was reaped or not, the group may have other members:
        // the kill(0) below says.
        let _ = sys::reap_nohang(pgid);
    }
    signal_group(pgid, 0)
}

/// SIGTERM the group, SIGKILL what is left after `grace`. Blocking; the
/// runtime's waiter task reaps the leader.
fn stop_group_blocking(pgid: u32, grace: Duration) {
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && group_alive(pgid, false) && leader_running(pgid) {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_group(pgid, libc::SIGKILL);
}

/// The line given to `/bin/sh -c`. A simple command (one program and its
/// arguments) is run with `exec`, so that the PID edgeward starts, logs and
/// signals is the program's own, not a shell's; anything more (pipes, lists,
/// `cd x && ...`, variable assignments) runs as written.
fn shell_line(cmd: &str) -> String {
    let cmd = cmd.trim();
    let first = cmd.split_whitespace().next().unwrap_or("");
    let compound = cmd
        .chars()
        .any(|c| matches!(c, ';' | '&' | '|' | '(' | ')' | '`' | '\n' | '{' | '}'))
        || cmd.contains("$(")
        || first.contains('=')
        || matches!(
            first,
            "exec"
                | "if"
                | "for"
                | "while"
                | "until"
                | "case"
                | "cd"
                | "export"
                | "set"
                | "."
                | "source"
                | "!"
        );
    if compound {
        cmd.to_string()
    } else {
        format!("exec {cmd}")
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("return code: {c}"),
        (None, Some(s)) => format!("signal: {s}"),
        _ => "return code: -".to_string(),
    }
}

impl Supervisor {
    fn take_port(&self) -> Option<u16> {
        let mut p = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let span = p.range.len();
        for _ in 0..span {
            let port = p.range.start() + (p.next % span) as u16;
            p.next = p.next.wrapping_add(1);
            if p.used.contains(&port) {
                continue;
            }
            // Free right now on the program's address?
            if TcpListener::bind((PROGRAM_IP, port)).is_ok() {
                p.used.insert(port);
                return Some(port);
            }
        }
        None
    }

    fn release_port(&self, port: u16) {
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .used
            .remove(&port);
    }

    fn program_for(&self, site: &str, log: &SitesLog, spec: &Arc<ProgramSpec>) -> Arc<Program> {
        let mut programs = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = programs.get(site)
            && p.spec == *spec
        {
            return p.clone();
        }
        let p = Arc::new(Program {
            site: site.to_string(),
            spec: spec.clone(),
            log: log.clone(),
            state: tokio::sync::Mutex::new(State::default()),
            waiting: Semaphore::new(MAX_WAITING),
            in_flight: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            pgid: Mutex::new(None),
            retired: AtomicBool::new(false),
        });
        if let Some(old) = programs.insert(site.to_string(), p.clone()) {
            old.retire("its configuration changed");
        }
        p
    }

    /// The running program of site `site` (`account/site`), started if
    /// needed; what it prints goes to `log`.
    pub(crate) async fn lease(
        &self,
        site: &str,
        log: &SitesLog,
        spec: &Arc<ProgramSpec>,
    ) -> Result<Lease, StartError> {
        let program = self.program_for(site, log, spec);
        program.lease().await
    }

    /// After a reload: stop the programs of removed sites and of sites whose
    /// command, environment, working directory or timeouts changed (they
    /// start again, with the new settings, on their next request).
    pub(crate) fn apply<'a>(
        &self,
        settings: &Settings,
        specs: impl IntoIterator<Item = (&'a str, &'a Arc<ProgramSpec>)>,
    ) {
        self.ports.lock().unwrap_or_else(|e| e.into_inner()).range = settings.port_range.clone();
        let specs: HashMap<&str, &Arc<ProgramSpec>> = specs.into_iter().collect();
        let mut programs = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        programs.retain(|id, p| match specs.get(id.as_str()) {
            Some(spec) if **spec == p.spec => true,
            Some(_) => {
                p.retire("its configuration changed; it starts again on the next request");
                false
            }
            None => {
                p.retire("its site was removed");
                false
            }
        });
    }

    /// Stop every program (edgeward is stopping): SIGTERM, then SIGKILL
    /// after `grace`. Blocking. `runtime_gone`: no task reaps children any
    /// more, so reap them here.
    pub(crate) fn shutdown(&self, grace: Duration, runtime_gone: bool) {
        let programs: Vec<Arc<Program>> = self
            .programs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect();
        let groups: Vec<u32> = programs
            .iter()
            .filter_map(|p| {
                p.retired.store(true, Ordering::SeqCst);
                let pgid = *p.pgid.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(pgid) = pgid {
                    p.log.write(&format!(
                        "Upstream stopping PID: {pgid} (edgeward is stopping)"
                    ));
                }
                pgid
            })
            .collect();
        if groups.is_empty() {
            return;
        }
        info!("stopping {} upstream program(s)", groups.len());
        for g in &groups {
            signal_group(*g, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        let alive = |g: u32| {
            if runtime_gone {
                group_alive(g, true)
            } else {
                group_alive(g, false) && leader_running(g)
            }
        };
        while Instant::now() < deadline && groups.iter().any(|g| alive(*g)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for g in &groups {
            signal_group(*g, libc::SIGKILL);
        }
    }
}

impl Program {
    fn retire(&self, why: &str) {
        self.retired.store(true, Ordering::SeqCst);
        let pgid = *self.pgid.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pgid) = pgid {
            info!(
                "site {}: stopping its program (PID {pgid}): {why}",
                self.site
            );
            self.log
                .write(&format!("Upstream stopping PID: {pgid} ({why})"));
            std::thread::spawn(move || stop_group_blocking(pgid, STOP_GRACE));
        }
    }

    async fn lease(self: &Arc<Self>) -> Result<Lease, StartError> {
        let Ok(_waiting) = self.waiting.try_acquire() else {
            return Err(StartError::Busy);
        };
        let mut st = self.state.lock().await;
        if let Some(r) = &st.running {
            if r.exited.borrow().is_none() {
                let addr = SocketAddr::from((PROGRAM_IP, r.port));
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                return Ok(Lease {
                    program: self.clone(),
                    addr,
                });
            }
            // It died since the last request: a crash.
            let r = st.running.take().expect("checked above");
            SUPERVISOR.release_port(r.port);
            *self.pgid.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if r.started.elapsed() >= HEALTHY_AFTER {
                st.crashes = 0;
            }
            self.crashed(&mut st);
        }
        if let Some(until) = st.backoff_until {
            let now = Instant::now();
            if now < until {
                return Err(StartError::Backoff(until - now));
            }
            st.backoff_until = None;
        }
        match self.start(&mut st).await {
            Ok(addr) => {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                Ok(Lease {
                    program: self.clone(),
                    addr,
                })
            }
            Err(e) => {
                self.crashed(&mut st);
                Err(e)
            }
        }
    }

    /// Count a crash; from the second in a row, back off 1 s, 2 s, ... 60 s.
    fn crashed(&self, st: &mut State) {
        st.crashes += 1;
        if st.crashes >= 2 {
            let exp = (st.crashes - 2).min(6);
            let wait = (Duration::from_secs(1) * 2u32.pow(exp)).min(MAX_BACKOFF);
            st.backoff_until = Some(Instant::now() + wait);
            self.log.write(&format!(
                "Upstream crashed {} times in a row; next start in {}s",
                st.crashes,
                wait.as_secs()
            ));
        }
    }

    fn fail(&self, reason: &str, code: &str) -> StartError {
        self.log.write(&format!(
            "Upstream starting failed: {} ({code} | reason: {reason})",
            self.spec.command
        ));
        warn!(
            "site {}: upstream program failed to start: {reason}",
            self.site
        );
        StartError::Failed(reason.to_string())
    }

    async fn start(self: &Arc<Self>, st: &mut State) -> Result<SocketAddr, StartError> {
        let spec = &self.spec;
        self.log
            .write(&format!("Upstream starting: {}", spec.command));
        if !spec.working_dir.is_dir() {
            let why = format!(
                "working directory {} does not exist",
                spec.working_dir.display()
            );
            return Err(self.fail(&why, "return code: -"));
        }
        if spec.user.is_some() && sys::effective_uid() != 0 {
            return Err(self.fail(
                "upstream.user needs edgeward to run as root",
                "return code: -",
            ));
        }
        let Some(port) = SUPERVISOR.take_port() else {
            return Err(self.fail("no free port in supervisor.port_range", "return code: -"));
        };
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(shell_line(&spec.command))
            .current_dir(&spec.working_dir)
            .env_clear()
            .env("PATH", MINIMAL_PATH)
            .env("HOME", &spec.working_dir)
            .env("LANG", "C.UTF-8")
            .envs(&spec.environment)
            .env("IP", PROGRAM_IP.to_string())
            .env("HOST", PROGRAM_IP.to_string())
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        // Its own session (and so its own process group, pgid = pid): the
        // whole group is signalled on stop, and the scheduler treats it as a
        // separate task group rather than a share of edgeward's CPU.
        // SAFETY: the closure runs in the forked child before exec; it only
        // calls setsid (sys::new_session), which is async-signal-safe and
        // allocates nothing.
        unsafe {
            cmd.pre_exec(sys::new_session);
        }
        if let Some(n) = spec.max_open_files {
            // SAFETY: the closure runs in the forked child before exec; it only
            // calls setrlimit (sys::set_open_files_limit), which is
            // async-signal-safe and allocates nothing; `n` is a plain value.
            unsafe {
                cmd.pre_exec(move || sys::set_open_files_limit(n));
            }
        }
        if let Some(u) = &spec.user {
            let (uid, gid, groups) = (u.uid, u.gid, u.groups.clone());
            // Groups first, then the gid, then the uid (after which nothing
            // privileged is possible any more). std's uid()/gid() would run
            // before our closures and leave no way to set the groups.
            // SAFETY: the closure runs in the forked child before exec; it only
            // calls setgroups/setgid/setuid (sys::set_groups/set_gid/set_uid),
            // which are async-signal-safe and allocate nothing (`?` passes
            // the io::Error on as is); `groups` was allocated before fork and
            // is only read.
            unsafe {
                cmd.pre_exec(move || {
                    sys::set_groups(&groups)?;
                    sys::set_gid(gid)?;
                    sys::set_uid(uid)
                });
            }
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                SUPERVISOR.release_port(port);
                return Err(self.fail(&e.to_string(), "return code: -"));
            }
        };
        // Its pid is its process group id (its own session). No id means it
        // was already reaped: there is nothing to watch or signal (a 0 taken
        // for a pgid would be edgeward's own group).
        let Some(pid) = child.id() else {
            SUPERVISOR.release_port(port);
            return Err(self.fail("exited before it could be watched", "return code: -"));
        };
        *self.pgid.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        for (stream, prefix) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
                "",
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
                "STDERR: ",
            ),
        ] {
            if let Some(stream) = stream {
                let log = self.log.clone();
                tokio::spawn(output::lines(stream, move |line| {
                    log.write(&format!("[{pid}] {prefix}{line}"))
                }));
            }
        }
        let (exit_tx, exit_rx) = watch::channel(None);
        let stopping = Arc::new(AtomicBool::new(false));
        {
            let (program, stopping) = (self.clone(), stopping.clone());
            tokio::spawn(async move {
                let (log, site) = (&program.log, &program.site);
                let desc = match child.wait().await {
                    Ok(s) => describe(s),
                    Err(e) => format!("return code: - | reason: {e}"),
                };
                // Whatever it left behind in its group goes with it.
                signal_group(pid, libc::SIGKILL);
                if stopping.load(Ordering::SeqCst) || program.retired.load(Ordering::SeqCst) {
                    log.write(&format!("Upstream stopped PID: {pid} ({desc})"));
                } else {
                    log.write(&format!("Upstream exited PID: {pid} ({desc})"));
                    info!("site {site}: upstream program PID {pid} exited ({desc})");
                }
                let _ = exit_tx.send(Some(desc));
            });
        }
        // Wait until it accepts connections, it exits, or time runs out.
        let deadline = Instant::now() + spec.start_timeout;
        let mut pause = Duration::from_millis(1);
        let addr = SocketAddr::from((PROGRAM_IP, port));
        let mut exited = exit_rx.clone();
        loop {
            if let Some(desc) = exited.borrow().clone() {
                SUPERVISOR.release_port(port);
                *self.pgid.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return Err(self.fail("exited before listening", &desc));
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                stopping.store(true, Ordering::SeqCst);
                std::thread::spawn(move || stop_group_blocking(pid, STOP_GRACE));
                SUPERVISOR.release_port(port);
                *self.pgid.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let why = format!(
                    "not listening on {addr} after {:?} (start_timeout)",
                    spec.start_timeout
                );
                self.fail(&why, "return code: -");
                return Err(StartError::Timeout);
            }
            let _ = tokio::time::timeout(pause.min(deadline - now), exited.changed()).await;
            // Loopback connects are cheap: poll often, the request waits.
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        self.log.write(&format!("Upstream started PID: {pid}"));
        info!(
            "site {}: upstream program started, PID {pid}, {addr}",
            self.site
        );
        st.running = Some(Running {
            pid,
            port,
            started: Instant::now(),
            exited: exit_rx,
            stopping,
        });
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if !spec.idle_timeout.is_zero() {
            tokio::spawn(self.clone().idle_watch(pid));
        }
        Ok(addr)
    }

    /// Stop the program once it has had no request in flight for
    /// `idle_timeout`.
    async fn idle_watch(self: Arc<Self>, pid: u32) {
        let idle = self.spec.idle_timeout;
        let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::time::sleep(tick).await;
            if self.retired.load(Ordering::SeqCst) {
                return;
            }
            let mut st = self.state.lock().await;
            let Some(r) = &st.running else { return };
            if r.pid != pid || r.exited.borrow().is_some() {
                return;
            }
            let quiet = self
                .last_used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed();
            if self.in_flight.load(Ordering::SeqCst) == 0 && quiet >= idle {
                let r = st.running.take().expect("checked above");
                drop(st);
                self.log.write(&format!(
                    "Upstream stopping PID: {pid} (idle for {}s)",
                    quiet.as_secs()
                ));
                r.stopping.store(true, Ordering::SeqCst);
                let mut exited = r.exited.clone();
                signal_group(pid, libc::SIGTERM);
                let gone = tokio::time::timeout(STOP_GRACE, exited.wait_for(|e| e.is_some()))
                    .await
                    .is_ok_and(|r| r.is_ok());
                if !gone {
                    signal_group(pid, libc::SIGKILL);
                    let _ = exited.wait_for(|e| e.is_some()).await;
                }
                *self.pgid.lock().unwrap_or_else(|e| e.into_inner()) = None;
                SUPERVISOR.release_port(r.port);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shell_line;

    #[test]
    fn simple_commands_are_execed() {
        assert_eq!(
            shell_line("node server.js --port 1"),
            "exec node server.js --port 1"
        );
        assert_eq!(
            shell_line("python3 app.py > out.log"),
            "exec python3 app.py > out.log"
        );
        for keep in [
            "cd app && node x",
            "a | b",
            "a; b",
            "FOO=1 node x",
            "exec node x",
            "echo $(id)",
            "if true; then x; fi",
        ] {
            assert_eq!(shell_line(keep), keep);
        }
    }
}

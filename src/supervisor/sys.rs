//! The supervisor's system calls, each behind a safe function: signalling
//! and reaping process groups, the effective user, user and group lookups,
//! and the settings applied in a program's process between fork and exec.
//! This is the only place in the supervisor that calls libc.

use super::RunAs;
use libc::{c_char, c_int, gid_t, uid_t};
use std::ffi::{CStr, CString};
use std::io;

/// `id` (a program's pid, which is also its process group id) as a pid_t,
/// or an error for the ids that must never be taken for a program: 0
/// (`kill(-0, ..)` is `kill(0, ..)`, edgeward's own group; `waitpid(0, ..)`
/// any child of that group), 1 (init, and `kill(-1, ..)` is every process)
/// and anything above `i32::MAX` (`-(id as i32)` would wrap to a positive
/// pid, a single unrelated process, or to `-1`).
fn program_id(id: u32) -> io::Result<libc::pid_t> {
    match libc::pid_t::try_from(id) {
        Ok(p) if p > 1 => Ok(p),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{id} is not the id of a program's process (group)"),
        )),
    }
}

/// Send `sig` to every process of the group `pgid` (0 only checks that the
/// group still has a process). Refuses pgid 0 and 1 (see `program_id`).
pub(crate) fn kill_group(pgid: u32, sig: c_int) -> io::Result<()> {
    let target = -program_id(pgid)?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours;
    // `target` is negative and below -1, so only the group `pgid` is
    // signalled, never edgeward's own group or every process.
    let rc = unsafe { libc::kill(target, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reap the child `pid` if it has exited, without waiting: `Ok(true)` if it
/// was reaped here, `Ok(false)` if it is still running. Refuses 0 and 1
/// (`waitpid(0, ..)` would reap any child of edgeward's group, one a runtime
/// task may be waiting for).
pub(crate) fn reap_nohang(pid: u32) -> io::Result<bool> {
    let pid = program_id(pid)?;
    let mut status: c_int = 0;
    // SAFETY: `status` is a live, writable c_int for the whole call; with
    // WNOHANG waitpid returns at once. `pid` is positive: only that child.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match rc {
        0 => Ok(false),
        r if r > 0 => Ok(true),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The effective user id of edgeward.
pub(crate) fn effective_uid() -> uid_t {
    // SAFETY: geteuid(2) has no arguments and no preconditions, and cannot
    // fail.
    unsafe { libc::geteuid() }
}

// ---- Between fork and exec ------------------------------------------------
//
// The functions below are for `CommandExt::pre_exec` closures: each makes one
// async-signal-safe system call and reads errno on failure; none allocates
// or takes a lock.

/// Start a new session (and so a new process group, pgid = pid).
pub(crate) fn new_session() -> io::Result<()> {
    // SAFETY: setsid(2) takes no arguments and touches no memory of ours.
    let rc = unsafe { libc::setsid() };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Set RLIMIT_NOFILE, soft and hard, to `n`.
pub(crate) fn set_open_files_limit(n: u64) -> io::Result<()> {
    let n = libc::rlim_t::try_from(n).unwrap_or(libc::RLIM_INFINITY);
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: `lim` is a live, initialised rlimit that setrlimit(2) only
    // reads during the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set the supplementary groups to `groups`.
pub(crate) fn set_groups(groups: &[gid_t]) -> io::Result<()> {
    // SAFETY: `groups.as_ptr()` points to `groups.len()` initialised gids,
    // alive for the call; setgroups(2) only reads them.
    let rc = unsafe { libc::setgroups(groups.len(), groups.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set the real, effective and saved group id.
pub(crate) fn set_gid(gid: gid_t) -> io::Result<()> {
    // SAFETY: setgid(2) takes an integer and touches no memory of ours.
    let rc = unsafe { libc::setgid(gid) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set the real, effective and saved user id (after this nothing privileged
/// is possible any more: set the groups first).
pub(crate) fn set_uid(uid: uid_t) -> io::Result<()> {
    // SAFETY: setuid(2) takes an integer and touches no memory of ours.
    let rc = unsafe { libc::setuid(uid) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// ---- Users and groups -----------------------------------------------------

/// Why `upstream.user` / `upstream.group` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UserError {
    #[error("{user:?} is not a user name")]
    UserNotAName { user: String },
    #[error("no user {user:?} on this system")]
    NoSuchUser { user: String },
    #[error("group {group:?} is not a group name")]
    GroupNotAName { group: String },
    #[error("group: no group {group:?} on this system")]
    NoSuchGroup { group: String },
}

impl UserError {
    /// The configuration key (under `upstream`) the error is about.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            UserError::UserNotAName { .. } | UserError::NoSuchUser { .. } => "user",
            UserError::GroupNotAName { .. } | UserError::NoSuchGroup { .. } => "group",
        }
    }
}

/// First size of the buffer for the strings of a passwd/group entry, and
/// the size past which a lookup answering ERANGE is given up.
const ENTRY_BUF: usize = 16 * 1024;
const MAX_ENTRY_BUF: usize = 4 * 1024 * 1024;

/// The uid and primary gid of the user `name`, if the system knows it.
fn passwd_ids(name: &CStr) -> Option<(uid_t, gid_t)> {
    let mut buf: Vec<c_char> = vec![0; ENTRY_BUF];
    loop {
        // SAFETY: `passwd` holds only integers and raw pointers, for which
        // all-zero bytes are a valid value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `pw`, `buf` (with its true
        // length) and `found` are live and writable for the whole call;
        // getpwnam_r writes the entry into `pw`, its strings into `buf`, and
        // `&pw` or null into `found`. Nothing keeps them after the call.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < MAX_ENTRY_BUF {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        // Only the ids are read: the string pointers in `pw` (into `buf`)
        // are not used.
        return (rc == 0 && !found.is_null()).then_some((pw.pw_uid, pw.pw_gid));
    }
}

/// The gid of the group `name`, if the system knows it.
fn group_id(name: &CStr) -> Option<gid_t> {
    let mut buf: Vec<c_char> = vec![0; ENTRY_BUF];
    loop {
        // SAFETY: `group` holds only integers and raw pointers, for which
        // all-zero bytes are a valid value.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as for getpwnam_r in `passwd_ids`: NUL-terminated name;
        // `gr`, `buf` (with its true length) and `found` live and writable
        // for the call, not kept after it.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut gr,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < MAX_ENTRY_BUF {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return (rc == 0 && !found.is_null()).then_some(gr.gr_gid);
    }
}

/// The groups of the user `name` whose primary group is `gid` (the
/// supplementary groups from the group database, and `gid`); empty if the
/// lookup fails.
fn group_list(name: &CStr, gid: gid_t) -> Vec<gid_t> {
    let mut groups: Vec<gid_t> = vec![0; 256];
    // A user in more groups than there is room for: getgrouplist answers -1
    // with the count it needs; grow once or twice (the membership may change
    // between calls), then give up.
    for _ in 0..3 {
        let mut n = c_int::try_from(groups.len()).unwrap_or(c_int::MAX);
        // SAFETY: `name` is NUL-terminated; `groups` has room for `n` gids
        // (n <= groups.len()) and getgrouplist writes at most `n` of them;
        // `n` is a live c_int it overwrites with the count. Nothing is kept
        // after the call.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        let n = usize::try_from(n).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(n);
            return groups;
        }
        if n <= groups.len() {
            break;
        }
        groups.resize(n, 0);
    }
    Vec::new()
}

/// Look up a user (and optionally a group) by name or number, with the
/// user's supplementary groups.
pub(crate) fn resolve_user(user: &str, group: Option<&str>) -> Result<RunAs, UserError> {
    let cname = CString::new(user).map_err(|_| UserError::UserNotAName {
        user: user.to_string(),
    })?;
    let (uid, mut gid) = match passwd_ids(&cname) {
        Some(ids) => ids,
        None => match user.parse::<u32>() {
            Ok(n) => (n, n),
            Err(_) => {
                return Err(UserError::NoSuchUser {
                    user: user.to_string(),
                });
            }
        },
    };
    if let Some(g) = group {
        let cg = CString::new(g).map_err(|_| UserError::GroupNotAName {
            group: g.to_string(),
        })?;
        gid = match group_id(&cg) {
            Some(id) => id,
            None => g.parse::<u32>().map_err(|_| UserError::NoSuchGroup {
                group: g.to_string(),
            })?,
        };
    }
    let mut groups = group_list(&cname, gid);
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Ok(RunAs {
        name: user.to_string(),
        uid,
        gid,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    #[test]
    fn root_resolves_to_uid_and_gid_0() {
        let r = resolve_user("root", None).unwrap();
        assert_eq!((r.name.as_str(), r.uid, r.gid), ("root", 0, 0));
        assert!(r.groups.contains(&0), "{:?}", r.groups);
        let r = resolve_user("root", Some("0")).unwrap();
        assert_eq!(r.gid, 0);
        assert!(r.groups.contains(&0), "{:?}", r.groups);
    }

    #[test]
    fn numbers_stand_for_unknown_ids() {
        let r = resolve_user("3999999", Some("3999998")).unwrap();
        assert_eq!((r.uid, r.gid), (3999999, 3999998));
        assert!(r.groups.contains(&3999998), "{:?}", r.groups);
    }

    #[test]
    fn user_errors_keep_their_messages_and_keys() {
        let cases = [
            (
                resolve_user("no-such-user-xyz", None),
                "no user \"no-such-user-xyz\" on this system",
                "user",
            ),
            (
                resolve_user("a\0b", None),
                "\"a\\0b\" is not a user name",
                "user",
            ),
            (
                resolve_user("root", Some("no-such-group-xyz")),
                "group: no group \"no-such-group-xyz\" on this system",
                "group",
            ),
            (
                resolve_user("root", Some("g\0")),
                "group \"g\\0\" is not a group name",
                "group",
            ),
        ];
        for (got, msg, key) in cases {
            let e = got.unwrap_err();
            assert_eq!(e.to_string(), msg);
            assert_eq!(e.key(), key, "{e}");
        }
    }

    #[test]
    fn kill_and_reap_refuse_our_own_group_and_every_process() {
        for pgid in [0, 1, u32::MAX, i32::MAX as u32 + 1] {
            let e = kill_group(pgid, 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{pgid}");
            let e = reap_nohang(pgid).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{pgid}");
        }
    }

    #[test]
    fn kill_group_signals_a_group_and_reap_collects_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        kill_group(pgid, 0).unwrap();
        assert!(!reap_nohang(pgid).unwrap(), "still running");
        kill_group(pgid, libc::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reap_nohang(pgid).unwrap() {
            assert!(Instant::now() < deadline, "not reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            kill_group(pgid, 0).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
        // Reaped here, so there is nothing left for std to wait for.
        let e = child.wait().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECHILD));
    }

    #[test]
    fn child_settings_apply_before_exec() {
        let root = effective_uid() == 0;
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "echo $(ulimit -n) $(id -u) $(id -g) $(id -G)"]);
        // SAFETY: the closure runs in the forked child before exec and only
        // calls the async-signal-safe wrappers above (no allocation: the
        // group list is a static array).
        unsafe {
            cmd.pre_exec(move || {
                new_session()?;
                set_open_files_limit(321)?;
                if root {
                    set_groups(&[65534, 4242])?;
                    set_gid(65534)?;
                    set_uid(65534)?;
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let want = if root {
            "321 65534 65534 65534 4242"
        } else {
            "321"
        };
        assert!(text.trim().starts_with(want), "{text:?}");
    }
}

//! Every process the benchmark starts, addressed by the name it was given
//! and signalled by its own pid, never by process name.
//!
//! Each child logs to `<run dir>/logs/<name>.log`, has its pid in
//! `<run dir>/pids/<name>.pid` (so `bench/run`'s trap can stop what is left
//! if this driver itself dies) and is started with a parent-death signal,
//! so none outlives the driver even on a crash. Children are spawned from
//! tokio worker threads, which live as long as the runtime: the signal
//! fires when the spawning thread ends, not only the process.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};

/// How long a child gets to exit after its stop signal before SIGKILL.
pub const STOP_TIMEOUT_MS: u64 = 10_000;
/// Most children one run starts (the Arbor cluster, a root group, etcd,
/// PostgreSQL, with room for restarts under new names).
pub const CHILDREN_MAX: usize = 64;

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Signal for a graceful stop: SIGTERM, or SIGINT for PostgreSQL's
    /// fast shutdown.
    pub stop_signal: i32,
    /// Run as this (uid, gid): PostgreSQL refuses to run as root.
    pub user: Option<(u32, u32)>,
}

impl Spec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, args: Vec<String>) -> Spec {
        Spec {
            name: name.into(),
            program: program.into(),
            args,
            env: Vec::new(),
            stop_signal: libc::SIGTERM,
            user: None,
        }
    }
}

struct Proc {
    spec: Spec,
    child: Option<Child>,
}

/// A child that got its stop signal and is not reaped yet.
pub struct Stopping {
    child: Child,
    pub signalled_at: Instant,
}

impl Stopping {
    /// Waits for the exit, SIGKILL after [`STOP_TIMEOUT_MS`] from the
    /// signal. True if the child exited on the stop signal.
    pub async fn finish(mut self) -> bool {
        let deadline = self.signalled_at + Duration::from_millis(STOP_TIMEOUT_MS);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

/// Dropped unfinished (an error on the way): no child is left behind.
impl Drop for Stopping {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub struct Supervisor {
    run_dir: PathBuf,
    procs: Mutex<Vec<Proc>>,
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this supervisor started and has
    // not reaped yet, so the pid cannot have been reused.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

impl Supervisor {
    pub fn new(run_dir: &Path) -> Result<Supervisor> {
        for dir in ["logs", "pids"] {
            let path = run_dir.join(dir);
            fs::create_dir_all(&path).map_err(|e| BenchError::io(path.display(), e))?;
        }
        Ok(Supervisor {
            run_dir: run_dir.to_path_buf(),
            procs: Mutex::new(Vec::new()),
        })
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.run_dir.join("logs").join(format!("{name}.log"))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Proc>> {
        // A panic while holding the lock leaves plain data; keep going so
        // the children are still stopped on the way out.
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `spec` (or starts it again under the same name once stopped).
    pub fn spawn(&self, spec: Spec) -> Result<u32> {
        let log_path = self.log_path(&spec.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| BenchError::io(log_path.display(), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| BenchError::io(log_path.display(), e))?;
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some((uid, gid)) = spec.user {
            command.uid(uid).gid(gid);
        }
        // SAFETY: prctl in the child only; pre_exec runs after the uid
        // change, so the death signal survives it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| BenchError::Spawn {
            what: format!("{} ({})", spec.name, spec.program.display()),
            source,
        })?;
        let pid = child.id();
        let pid_path = self.run_dir.join("pids").join(format!("{}.pid", spec.name));
        fs::write(&pid_path, format!("{pid}\n"))
            .map_err(|e| BenchError::io(pid_path.display(), e))?;
        let mut procs = self.lock();
        if let Some(existing) = procs.iter_mut().find(|p| p.spec.name == spec.name) {
            existing.spec = spec;
            existing.child = Some(child);
        } else if procs.len() >= CHILDREN_MAX {
            drop(procs);
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::cluster(
                "supervisor",
                format!("more than {CHILDREN_MAX} children"),
            ));
        } else {
            procs.push(Proc {
                spec,
                child: Some(child),
            });
        }
        Ok(pid)
    }

    /// Starts a stopped child again with its last spec.
    pub fn restart(&self, name: &str) -> Result<u32> {
        let spec = self
            .lock()
            .iter()
            .find(|p| p.spec.name == name)
            .map(|p| p.spec.clone())
            .ok_or_else(|| BenchError::cluster("supervisor", format!("no child named {name}")))?;
        self.spawn(spec)
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.lock()
            .iter()
            .find(|p| p.spec.name == name)
            .and_then(|p| p.child.as_ref().map(Child::id))
    }

    /// Names of children that exited although nobody stopped them.
    pub fn exited(&self) -> Vec<String> {
        self.lock()
            .iter_mut()
            .filter_map(|p| match p.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(_))) | Some(Err(_)) => Some(p.spec.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// SIGKILL (a crash) and reap; returns when the signal was sent.
    pub fn kill9(&self, name: &str) -> Option<Instant> {
        let mut child = self
            .lock()
            .iter_mut()
            .find(|p| p.spec.name == name)
            .and_then(|p| p.child.take())?;
        signal(child.id(), libc::SIGKILL);
        let at = Instant::now();
        let _ = child.wait();
        Some(at)
    }

    /// The stop signal, then SIGKILL after [`STOP_TIMEOUT_MS`]. True if the
    /// child exited on the stop signal.
    pub async fn stop(&self, name: &str) -> bool {
        match self.begin_stop(name) {
            Some(stopping) => stopping.finish().await,
            None => true,
        }
    }

    /// Sends the stop signal and returns at once: the caller measures what
    /// happens while the child shuts down, then [`Stopping::finish`]es it.
    pub fn begin_stop(&self, name: &str) -> Option<Stopping> {
        let (child, stop_signal) = self
            .lock()
            .iter_mut()
            .find(|p| p.spec.name == name)
            .and_then(|p| p.child.take().map(|c| (c, p.spec.stop_signal)))?;
        signal(child.id(), stop_signal);
        Some(Stopping {
            child,
            signalled_at: Instant::now(),
        })
    }

    /// Stops every child, the last started first.
    pub async fn stop_all(&self) -> Vec<String> {
        let names: Vec<String> = self
            .lock()
            .iter()
            .rev()
            .map(|p| p.spec.name.clone())
            .collect();
        let mut killed = Vec::new();
        for name in names {
            if !self.stop(&name).await {
                killed.push(name);
            }
        }
        killed
    }

    /// Resident set size of the child now, KiB.
    pub fn rss_kib(&self, name: &str) -> Option<u64> {
        let pid = self.pid(name)?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        crate::soak::rss_kib_of_status(&status)
    }

    /// CPU seconds (user + system) the child has used so far.
    pub fn cpu_seconds(&self, name: &str) -> Option<f64> {
        let pid = self.pid(name)?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        cpu_seconds_of_stat(&stat, clock_ticks())
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no side effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds. The command
/// name (field 2) may contain spaces, so fields are counted after its `)`.
pub fn cpu_seconds_of_stat(stat: &str, ticks_per_second: f64) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_add_user_and_system_time() {
        let stat =
            "4242 (arbor store) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_seconds_of_stat(stat, 100.0), Some(3.0));
        assert_eq!(cpu_seconds_of_stat("garbage", 100.0), None);
    }
}

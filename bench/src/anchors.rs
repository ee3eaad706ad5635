//! The anchors Arbor is compared with: a 3-member etcd cluster and a
//! throwaway local PostgreSQL, both started fresh in the run directory on
//! their own ports and stopped with everything else.

use std::path::Path;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::arbor::{channel, free_ports, READY_TIMEOUT_MS};
use crate::error::{BenchError, Result};
use crate::procs::{Spec, Supervisor};

#[allow(clippy::all, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub const ETCD_MEMBERS: usize = 3;

pub struct Etcd {
    pub client_addresses: Vec<String>,
}

impl Etcd {
    pub async fn start(supervisor: &Supervisor, program: &str, data: &Path) -> Result<Etcd> {
        let ports = free_ports(2 * ETCD_MEMBERS)?;
        let client: Vec<String> = ports[..ETCD_MEMBERS]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let peer: Vec<String> = ports[ETCD_MEMBERS..]
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let initial_cluster: Vec<String> = peer
            .iter()
            .enumerate()
            .map(|(i, url)| format!("etcd-{}={url}", i + 1))
            .collect();
        for i in 0..ETCD_MEMBERS {
            let name = format!("etcd-{}", i + 1);
            let client_url = format!("http://{}", client[i]);
            supervisor.spawn(Spec::new(
                name.clone(),
                program,
                vec![
                    "--name".into(),
                    name.clone(),
                    "--data-dir".into(),
                    data.join(&name).display().to_string(),
                    "--listen-client-urls".into(),
                    client_url.clone(),
                    "--advertise-client-urls".into(),
                    client_url,
                    "--listen-peer-urls".into(),
                    peer[i].clone(),
                    "--initial-advertise-peer-urls".into(),
                    peer[i].clone(),
                    "--initial-cluster".into(),
                    initial_cluster.join(","),
                    "--initial-cluster-token".into(),
                    "arbor-bench".into(),
                    "--initial-cluster-state".into(),
                    "new".into(),
                    "--logger".into(),
                    "zap".into(),
                    "--log-level".into(),
                    "warn".into(),
                ],
            ))?;
        }
        let etcd = Etcd {
            client_addresses: client,
        };
        etcd.leader(supervisor).await?;
        Ok(etcd)
    }

    /// The client address of the member that leads, once one does.
    pub async fn leader(&self, supervisor: &Supervisor) -> Result<String> {
        use etcdserverpb::maintenance_client::MaintenanceClient;
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        let mut last_error = String::from("no answer yet");
        while Instant::now() < deadline {
            for address in &self.client_addresses {
                let mut client = MaintenanceClient::new(channel(address)?);
                let call = client.status(etcdserverpb::StatusRequest {});
                match tokio::time::timeout(Duration::from_secs(2), call).await {
                    Ok(Ok(status)) => {
                        let status = status.into_inner();
                        let member = status.header.map_or(0, |h| h.member_id);
                        if status.leader != 0 && status.leader == member {
                            return Ok(address.clone());
                        }
                        last_error = format!("{address}: leader {}", status.leader);
                    }
                    Ok(Err(status)) => last_error = format!("{address}: {}", status.message()),
                    Err(_) => last_error = format!("{address}: timed out"),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(BenchError::NotReady {
            what: "etcd".into(),
            seconds: READY_TIMEOUT_MS / 1000,
            last_error,
            log: supervisor.log_path("etcd-1").display().to_string(),
        })
    }

    pub fn kv(address: &str) -> Result<etcdserverpb::kv_client::KvClient<Channel>> {
        Ok(etcdserverpb::kv_client::KvClient::new(channel(address)?))
    }
}

/// The settings the throwaway PostgreSQL runs with (also written to the
/// report): durable commits like Arbor's synced RocksDB writes.
pub const POSTGRES_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("shared_buffers", "256MB"),
    ("max_connections", "300"),
    ("listen_addresses", "127.0.0.1"),
];

pub struct Postgres {
    pub port: u16,
}

/// uid and gid of `postgres`, which PostgreSQL must run as when the
/// benchmark runs as root (it refuses to run as root).
fn postgres_user() -> Result<(u32, u32)> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| BenchError::io("/etc/passwd", e))?;
    passwd_entry(&passwd, "postgres").ok_or_else(|| {
        BenchError::cluster(
            "postgres user",
            "running as root needs the `postgres` user (the postgresql package creates it)",
        )
    })
}

pub fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == user {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

impl Postgres {
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        )
    }

    pub async fn start(supervisor: &Supervisor, bin_dir: &Path, data: &Path) -> Result<Postgres> {
        // SAFETY: geteuid has no side effects.
        let as_root = unsafe { libc::geteuid() } == 0;
        let user = if as_root {
            Some(postgres_user()?)
        } else {
            None
        };
        std::fs::create_dir_all(data).map_err(|e| BenchError::io(data.display(), e))?;
        if let Some((uid, gid)) = user {
            // The run directory is root's (mode 700 from mktemp); the
            // postgres user must reach and own its data directory.
            chmod(supervisor.run_dir(), 0o755)?;
            chown(data, uid, gid)?;
        }
        let mut initdb = tokio::process::Command::new(bin_dir.join("initdb"));
        initdb
            .args(["-D", &data.display().to_string()])
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .kill_on_drop(true);
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let output = initdb.output().await.map_err(|source| BenchError::Spawn {
            what: "initdb".into(),
            source,
        })?;
        if !output.status.success() {
            return Err(BenchError::Command {
                what: "initdb".into(),
                detail: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let port = free_ports(1)?[0];
        let mut args = vec![
            "-D".to_string(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            format!("unix_socket_directories={}", data.display()),
        ];
        for (key, value) in POSTGRES_SETTINGS {
            args.extend(["-c".to_string(), format!("{key}={value}")]);
        }
        let mut spec = Spec::new("postgres", bin_dir.join("postgres"), args);
        // SIGINT: fast shutdown (roll back open transactions, checkpoint).
        spec.stop_signal = libc::SIGINT;
        spec.user = user;
        supervisor.spawn(spec)?;
        let postgres = Postgres { port };
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        let mut last_error = String::new();
        while Instant::now() < deadline {
            match crate::sql::connect(&postgres.connection_string()).await {
                Ok(client) => match client.simple_query("SELECT 1").await {
                    Ok(_) => return Ok(postgres),
                    Err(e) => last_error = e.to_string(),
                },
                Err(e) => last_error = e.to_string(),
            }
            if !supervisor.exited().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(BenchError::NotReady {
            what: "PostgreSQL".into(),
            seconds: READY_TIMEOUT_MS / 1000,
            last_error,
            log: supervisor.log_path("postgres").display().to_string(),
        })
    }
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| BenchError::io(path.display(), e))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| BenchError::io(path.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_entry_reads_uid_and_gid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(passwd_entry(passwd, "postgres"), Some((101, 104)));
        assert_eq!(passwd_entry(passwd, "nobody"), None);
    }
}

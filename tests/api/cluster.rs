//! A PostgreSQL cluster of a test's own, for tests that stop, restart or delay the database
//! (`recovery`, `startup`) — never the shared Postgres, which every other test is using.
//!
//! [`ThrowawayCluster::create`] runs initdb into a fresh temporary directory (trust
//! authentication, `fsync` off) and starts the server on a free port;
//! [`ThrowawayCluster::initialise`] leaves it stopped, for a test to start when it likes.
//! Dropping the cluster stops the server and removes the directory, also when the test
//! fails. It needs the PostgreSQL server binaries (`pg_config --bindir`, or
//! `/usr/lib/postgresql/*/bin`); as root it runs them as the `postgres` user.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
};

use crate::helpers::{free_port, unique};

/// A PostgreSQL cluster of one test's own, stopped and removed on drop.
pub struct ThrowawayCluster {
    bindir: PathBuf,
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    pub port: u16,
}

impl ThrowawayCluster {
    /// Initialises a cluster in a fresh temporary directory and starts it on a free port.
    pub fn create() -> Self {
        let cluster = Self::initialise();
        cluster.start();
        cluster
    }

    /// Initialises a cluster in a fresh temporary directory, to listen on a free port once
    /// started; until then, nothing listens there.
    pub fn initialise() -> Self {
        let bindir = postgres_bindir();
        let root = std::env::temp_dir().join(unique("tenantry-cluster"));
        // The directory belongs to the user the server runs as (initdb refuses root).
        run(as_postgres(Path::new("mkdir"))
            .arg("-m")
            .arg("700")
            .arg(&root));
        let cluster = Self {
            data: root.join("data"),
            log: root.join("server.log"),
            port: free_port(),
            bindir,
            root,
        };
        run(as_postgres(&cluster.bindir.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions", "-D"])
            .arg(&cluster.data));
        cluster
    }

    /// The URL of `database` on this cluster, as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut command = as_postgres(&self.bindir.join("pg_ctl"));
        command
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60"])
            .args(args);
        command
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.root.display()
        );
        self.checked(self.pg_ctl(&["-o", &options, "start"]), "start");
    }

    /// A fast shutdown: sessions are terminated (57P01), then the server exits.
    pub fn stop(&self) {
        self.checked(self.pg_ctl(&["-m", "fast", "stop"]), "stop");
    }

    pub fn restart(&self) {
        self.checked(self.pg_ctl(&["-m", "fast", "restart"]), "restart");
    }

    fn checked(&self, mut command: Command, what: &str) {
        let output = command.output().expect("pg_ctl runs");
        assert!(
            output.status.success(),
            "pg_ctl {what} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Where the PostgreSQL server binaries are: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn postgres_bindir() -> PathBuf {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_server(&dir) {
            return dir;
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, dir)| dir).expect(
        "a throwaway cluster needs the PostgreSQL server binaries (initdb, pg_ctl): \
         none found through pg_config --bindir or under /usr/lib/postgresql/*/bin",
    )
}

/// `program`, run as the `postgres` user when this process is root.
fn as_postgres(program: &Path) -> Command {
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if is_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

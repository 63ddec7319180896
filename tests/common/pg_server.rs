//! A throwaway PostgreSQL server for tests: its own data directory, a free port on
//! 127.0.0.1, run as an unprivileged user when the tests run as root (PostgreSQL
//! refuses root). A watchdog stops it if the test process dies without cleaning up.

use std::{
    net::TcpListener,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
};

use tempfile::TempDir;

/// `nobody`: who runs the server when the tests run as root.
const UNPRIVILEGED: u32 = 65534;

pub struct PgServer {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    watchdog: Option<Child>,
}

/// The newest PostgreSQL server binaries on the machine.
pub fn binaries() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists() && bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// Starts a fresh server; `None` if the machine has no PostgreSQL binaries.
    pub fn start() -> Option<Self> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("scopegate-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            std::os::unix::fs::chown(dir.path(), Some(UNPRIVILEGED), Some(UNPRIVILEGED)).unwrap();
        }
        let mut server = Self {
            bin,
            dir,
            port: free_port(),
            watchdog: None,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        server.start_again();
        server.watchdog = Some(server.watch());
        Some(server)
    }

    /// A URL for the `postgres` database as superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.stdin(Stdio::null()).current_dir(self.dir.path());
        if is_root() {
            command.uid(UNPRIVILEGED).gid(UNPRIVILEGED);
        }
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
            ],
        );
    }

    /// Stops the server: clients are disconnected at once (`-m fast`).
    pub fn stop(&self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["stop", "-w", "-m", "fast", "-D", data.to_str().unwrap()],
        );
    }

    /// Stops the server and removes its files once this process is gone, however
    /// it ends (the shared server is never dropped).
    fn watch(&self) -> Child {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \
             {ctl} stop -m immediate -D {data} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            ctl = self.bin.join("pg_ctl").display(),
            data = self.data().display(),
            dir = self.dir.path().display(),
        );
        let mut watchdog = Command::new("sh");
        watchdog
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            watchdog.uid(UNPRIVILEGED).gid(UNPRIVILEGED);
        }
        watchdog.spawn().unwrap()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args([
                "stop",
                "-w",
                "-m",
                "immediate",
                "-D",
                data.to_str().unwrap(),
            ])
            .output();
    }
}

/// The database the PostgreSQL tests use: `SCOPEGATE_TEST_DATABASE_URL` if set
/// (`.ci/run` starts one), else one throwaway server per test process. `None`
/// only outside CI on a machine without PostgreSQL; under `CI` that panics.
pub fn database_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("SCOPEGATE_TEST_DATABASE_URL") {
            return Some(url);
        }
        match PgServer::start() {
            Some(server) => Some(SHARED.get_or_init(|| server).url()),
            None if std::env::var_os("CI").is_some() => panic!(
                "CI is set but there is no PostgreSQL: set SCOPEGATE_TEST_DATABASE_URL \
                 or install PostgreSQL's server binaries"
            ),
            None => None,
        }
    })
    .clone()
}

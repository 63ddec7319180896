//! The quickstart as an operator runs it: a real process, stopped with SIGTERM, and
//! started where it cannot run. `cargo test` builds the example beside this binary.

mod common;

use common::process::{self, quickstart_binary, Running};
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

fn command(data: &Path) -> Command {
    let mut command = Command::new(quickstart_binary());
    command
        .env("SCOPEGATE_ADDR", "127.0.0.1:0")
        .env("SCOPEGATE_DATA", data)
        .env("RUST_LOG", "info")
        .env_remove("SCOPEGATE_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn start(data: &Path) -> Running {
    process::start(command(data))
}

/// One `GET` over a fresh connection; the status code.
fn get(addr: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the quickstart did not exit in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_the_quickstart_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(&dir.path().join("data"));
    assert_eq!(get(&running.addr, "/health"), 200);
    let terminated = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = wait_with_deadline(&mut running.child, Duration::from_secs(10));
    assert!(
        status.success(),
        "SIGTERM must end in a clean exit, got {status:?}"
    );
    let log: Vec<String> = running.lines.try_iter().collect();
    assert!(
        log.iter()
            .any(|line| line.contains("SIGTERM: shutting down")),
        "{log:?}"
    );
    assert!(log.iter().any(|line| line.contains("shut down gracefully")));
    // The database was closed: another process may open it now.
    let mut again = start(&dir.path().join("data"));
    assert_eq!(get(&again.addr, "/health"), 200);
    let _ = again.child.kill();
}

/// Runs the quickstart where it cannot start; its exit status and stderr.
fn failed_start(data: &Path) -> (ExitStatus, String) {
    let mut child = command(data).spawn().unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(20));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[test]
fn startup_errors_print_their_whole_cause() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let running = start(&data);
    let (status, stderr) = failed_start(&data);
    assert!(!status.success());
    assert!(
        stderr.contains("token store backend failed: ") && stderr.contains("lock"),
        "a held lock must say so: {stderr}"
    );
    drop(running);

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let (status, stderr) = failed_start(&file);
    assert!(!status.success());
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("os error"),
        "the OS's reason is printed: {stderr}"
    );
}

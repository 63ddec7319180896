//! The examples as processes: started on an ephemeral port, their stdout read
//! line by line, killed and reaped when dropped (even if the test fails), and
//! called over HTTP/1.1.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

/// `target/<profile>/examples/quickstart`, built by `cargo test` with the tests.
pub fn quickstart_binary() -> PathBuf {
    example_binary("quickstart")
}

/// `target/<profile>/examples/<name>`, built by `cargo test` with the tests.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// A running quickstart and what it printed.
pub struct Running {
    pub child: Child,
    pub addr: String,
    /// Its stdout lines after the one announcing the address.
    pub lines: mpsc::Receiver<String>,
    /// The line announcing the address.
    pub banner: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` (stdout is piped here) and waits, at most 20 s, for the line
/// that announces its address.
pub fn start(mut command: Command) -> Running {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("the example is built (`cargo test` builds the examples)");
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    // From here the child is killed and waited for on drop, even if the test fails.
    let mut running = Running {
        child,
        addr: String::new(),
        lines,
        banner: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = running
            .lines
            .recv_timeout(wait)
            .expect("the quickstart printed its address");
        if let Some(url) = line.split("listening on http://").nth(1) {
            running.addr = url.split_whitespace().next().unwrap().to_owned();
            running.banner = line;
            return running;
        }
    }
}

/// One HTTP/1.1 exchange over a fresh connection: status and JSON body.
pub fn call(
    addr: &str,
    method: &str,
    path: &str,
    auth: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let json = response
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// An `Authorization` header line for `token`.
pub fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

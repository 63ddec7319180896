//! Acknowledged means on stable storage: every write the gate acknowledges has been
//! `fdatasync`ed (or `fsync`ed) to sled's log before it returns.
//!
//! The check runs this test binary again as a child under `strace`, which records
//! the writes to sled's log file, the syncs of it and the child's "acknowledged"
//! lines in one ordered trace. Between two acknowledgements the log must be
//! written (the operation's own record) and synced *after* that write: a sync
//! issued before the write, or sled's own background `fsync` (every 500 ms),
//! does not make the operation durable. sled 0.34 on its own only issues
//! `sync_file_range` per write, so without scopegate's own sync most gaps have
//! none.
//!
//! strace must be installed (`.ci/run` installs it); without it the test says so
//! loudly, and under `CI` it fails rather than pass without running.

mod common;

use std::{collections::HashMap, path::Path, process::Command};

use common::{girder_scopes, Users};
use scopegate::{store::SledStore, ApiKeyUpdate, NewApiKey, NewToken, ScopeGate, TokenRequest};

/// Set in the child's environment: the directory of its database.
const CHILD_DIR: &str = "SCOPEGATE_DURABILITY_CHILD_DIR";
const ACK: &str = "ACKNOWLEDGED";

/// The child: one acknowledged write of every kind, each announced after it returns.
#[tokio::test]
#[ignore = "run by every_acknowledged_write_is_synced_before_it_returns, under strace"]
async fn child_writes_and_acknowledges() {
    let dir = std::env::var_os(CHILD_DIR).expect("run by the durability test");
    let users = Users::default();
    let bob = users.add("bob", false);
    let gate = ScopeGate::builder(SledStore::open(&dir).unwrap(), users)
        .without_cache()
        .with_registry(girder_scopes())
        .build()
        .unwrap();
    let ack = |what: &str| println!("{ACK} {what}");
    for round in 0..4 {
        let key = gate
            .create_api_key(&bob, NewApiKey::new(format!("k{round}")))
            .await
            .unwrap();
        ack("create key");
        let token = gate
            .exchange_api_key(key.secret.expose(), TokenRequest::default())
            .await
            .unwrap();
        ack("exchange");
        let session = gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        ack("create token");
        gate.revoke_token(&session.token.id).await.unwrap();
        ack("revoke token");
        gate.rotate_api_key(&key.key.id, std::time::Duration::ZERO)
            .await
            .unwrap();
        ack("rotate");
        let off = ApiKeyUpdate {
            active: Some(false),
            ..Default::default()
        };
        gate.update_api_key(&key.key.id, off).await.unwrap();
        ack("deactivate");
        gate.delete_api_key(&key.key.id).await.unwrap();
        ack("delete key");
        drop(token);
    }
}

fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// What the trace shows, in order: syncs of sled's log and acknowledgements.
#[derive(Debug, PartialEq)]
enum Event {
    /// A write to the log returned.
    Write,
    /// A sync of the log returned 0.
    Sync,
    Ack(String),
}

/// Reads an strace log (`-f`: each line starts with a pid) into events. Opens of
/// `log` tell which descriptors are the log file. A syscall interrupted by another
/// thread's is printed in two halves, `fsync(7 <unfinished ...>` and later
/// `<... fsync resumed>) = 0`: it counts when it returns. An open split that way
/// names the file in its first half and the descriptor in its second.
fn events(trace: &str, log: &Path) -> Vec<Event> {
    let log = format!("\"{}\"", log.display());
    let mut is_log: HashMap<String, bool> = HashMap::new();
    let mut unfinished: HashMap<String, String> = HashMap::new();
    let mut unfinished_writes: HashMap<String, String> = HashMap::new();
    // Per pid: whether the open it has in flight is of the log.
    let mut opening: HashMap<String, bool> = HashMap::new();
    let mut events = Vec::new();
    for line in trace.lines() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let sync_fd = if let Some(rest) = call.strip_prefix("openat(") {
            if rest.contains("<unfinished ...>") {
                opening.insert(pid.to_owned(), rest.contains(&log));
            } else if let Some((_, fd)) = rest.rsplit_once(" = ") {
                is_log.insert(fd.trim().to_owned(), rest.contains(&log));
            }
            None
        } else if let Some(rest) = call.strip_prefix("<... openat resumed>") {
            let of_log = opening.remove(pid).unwrap_or(false);
            if let Some((_, fd)) = rest.rsplit_once(" = ") {
                is_log.insert(fd.trim().to_owned(), of_log);
            }
            None
        } else if let Some(rest) = call.strip_prefix("pwrite64(") {
            let fd: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if rest.contains("<unfinished ...>") {
                unfinished_writes.insert(pid.to_owned(), fd);
            } else if wrote_bytes(rest) && is_log.get(&fd).copied().unwrap_or(false) {
                events.push(Event::Write);
            }
            None
        } else if call.starts_with("<... pwrite64 resumed>") {
            let fd = unfinished_writes.remove(pid);
            let of_log = fd.is_some_and(|fd| is_log.get(&fd).copied().unwrap_or(false));
            if of_log && wrote_bytes(call) {
                events.push(Event::Write);
            }
            None
        } else if let Some(rest) = call
            .strip_prefix("fdatasync(")
            .or_else(|| call.strip_prefix("fsync("))
        {
            let fd: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if rest.contains("<unfinished ...>") {
                unfinished.insert(pid.to_owned(), fd);
                None
            } else {
                returned_zero(rest).then_some(fd)
            }
        } else if call.starts_with("<... fdatasync resumed>")
            || call.starts_with("<... fsync resumed>")
        {
            let fd = unfinished.remove(pid);
            fd.filter(|_| returned_zero(call))
        } else {
            if call.starts_with("write(1, ") && call.contains(ACK) {
                let what = call.split(ACK).nth(1).unwrap_or("");
                let what = what.split("\\n").next().unwrap_or("").trim();
                events.push(Event::Ack(what.to_owned()));
            }
            None
        };
        if sync_fd.is_some_and(|fd| is_log.get(&fd).copied().unwrap_or(false)) {
            events.push(Event::Sync);
        }
    }
    events
}

/// Whether a traced write returned a positive byte count.
fn wrote_bytes(call: &str) -> bool {
    call.rsplit_once(" = ")
        .and_then(|(_, result)| result.trim().parse::<i64>().ok())
        .is_some_and(|n| n > 0)
}

/// Whether a traced call returned 0: strace pads the result, `fsync(7)      = 0`.
fn returned_zero(call: &str) -> bool {
    call.rsplit_once(')')
        .is_some_and(|(_, result)| result.trim() == "= 0")
}

#[test]
fn every_acknowledged_write_is_synced_before_it_returns() {
    if !strace_available() {
        common::skip("strace is not installed: the durability test did not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trace = dir.path().join("trace");
    let output = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,pwrite64,fdatasync,fsync,write",
            "-o",
        ])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args([
            "child_writes_and_acknowledges",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, &data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let trace = std::fs::read_to_string(&trace).unwrap();
    let events = events(&trace, &data.join("db"));
    let acks = events.iter().filter(|e| matches!(e, Event::Ack(_))).count();
    assert_eq!(acks, 28, "every write was acknowledged: {events:?}");
    // Since the previous acknowledgement: whether the log was written, and
    // whether it was synced after its last write.
    let (mut written, mut synced) = (false, false);
    for event in &events {
        match event {
            Event::Write => (written, synced) = (true, false),
            Event::Sync => synced = written,
            Event::Ack(what) => {
                assert!(
                    written,
                    "{what:?} was acknowledged without a write to sled's log"
                );
                assert!(
                    synced,
                    "{what:?} was acknowledged with no sync of sled's log after its write"
                );
                (written, synced) = (false, false);
            }
        }
    }
}

#[test]
fn the_trace_reader_sees_syncs_of_the_log_only() {
    let trace = "\
12 openat(AT_FDCWD, \"/d/db\", O_RDONLY|O_CLOEXEC) = 7
12 openat(AT_FDCWD, \"/d/conf\", O_RDONLY|O_CLOEXEC) = 8
12 openat(AT_FDCWD, \"/d\", O_RDONLY|O_DIRECTORY) = 9
12 openat(AT_FDCWD, \"/d/db\", O_RDONLY|O_CLOEXEC <unfinished ...>
13 pwrite64(7, \"abc\", 3, 0) = 3
13 pwrite64(8, \"abc\", 3, 0) = 3
13 fsync(7)                          = 0
12 <... openat resumed>)             = 9
12 write(1, \"ACKNOWLEDGED zero\n\", 18) = 18
13 fdatasync(9)                     = 0
13 fdatasync(8)                     = 0
13 pwrite64(9, \"abc\", 3, 3 <unfinished ...>
13 <... pwrite64 resumed>)           = 3
13 pwrite64(9, \"\", 0, 6)           = 0
13 fdatasync(7 <unfinished ...>
12 write(1, \"ACKNOWLEDGED one\\n\", 17) = 17
13 <... fdatasync resumed>)          = 0
13 fsync(7)                          = -1 EIO (Input/output error)
13 fsync(7)                          = 0
12 write(1, \"ACKNOWLEDGED two\\n\", 17) = 17
";
    assert_eq!(
        events(trace, Path::new("/d/db")),
        vec![
            Event::Write,
            Event::Sync,
            Event::Ack("zero".to_owned()),
            Event::Sync,
            Event::Write,
            Event::Ack("one".to_owned()),
            Event::Sync,
            Event::Sync,
            Event::Ack("two".to_owned()),
        ]
    );
}

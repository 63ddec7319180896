//! Two quickstart processes on one PostgreSQL database are two replicas of one app:
//! a token issued by one works on the other, and a key deleted on one is refused
//! by the other within the documented bound; on separate hosts (network
//! namespaces), one cut off from the database silently stops accepting what the
//! other revoked within the lag limit, and refuses at once while cut off.
#![cfg(feature = "postgres")]

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    link::{server_of, Link},
    process::{self, bearer, call, quickstart_binary, Running},
};

fn start(url: &str, data: &std::path::Path) -> Running {
    start_at(Command::new(quickstart_binary()), "127.0.0.1:0", url, data)
}

/// The quickstart run by `command` (the binary, or `ip netns exec` of it),
/// listening on `addr`.
fn start_at(mut command: Command, addr: &str, url: &str, data: &std::path::Path) -> Running {
    command
        .env("SCOPEGATE_ADDR", addr)
        .env("SCOPEGATE_DATA", data)
        .env("SCOPEGATE_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let replica = process::start(command);
    assert!(
        replica.banner.contains("data in PostgreSQL"),
        "{}",
        replica.banner
    );
    // Its feed subscribes right after start; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    replica
}

/// Makes sure `target/<profile>/examples/quickstart` is the `postgres` build: cargo
/// links that path to whichever feature set it built last, and does not relink a
/// build that is already fresh.
fn build_postgres_quickstart() {
    let release = quickstart_binary().to_string_lossy().contains("/release/");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "--features",
        "postgres",
        "--example",
        "quickstart",
    ]);
    if release {
        cargo.arg("--release");
    }
    assert!(cargo.status().unwrap().success());
}

#[test]
fn two_quickstarts_on_one_database_share_tokens_and_revocations() {
    build_postgres_quickstart();
    let url = common::pg_server::database_url().expect("a PostgreSQL database");
    let data = tempfile::tempdir().unwrap();
    let (a, b) = (start(&url, data.path()), start(&url, data.path()));
    // bob:bob-pass
    let (status, login) = call(
        &a.addr,
        "POST",
        "/login",
        "Authorization: Basic Ym9iOmJvYi1wYXNz\r\n",
        None,
    );
    assert_eq!(status, 200, "{login}");
    let session = login["auth_token"]["token"].as_str().unwrap().to_owned();
    assert_eq!(call(&b.addr, "GET", "/me", &bearer(&session), None).0, 200);

    let new_key = serde_json::json!({"name": "reader", "scope": ["core.data.read"]});
    let (status, key) = call(
        &a.addr,
        "POST",
        "/api_key",
        &bearer(&session),
        Some(&new_key),
    );
    assert_eq!(status, 201, "{key}");
    let exchange = serde_json::json!({"key": key["key"]});
    let (status, minted) = call(&b.addr, "POST", "/api_key/token", "", Some(&exchange));
    assert_eq!(status, 200, "{minted}");
    let reader = minted["auth_token"]["token"].as_str().unwrap().to_owned();
    for replica in [&a, &b] {
        assert_eq!(
            call(&replica.addr, "GET", "/data", &bearer(&reader), None).0,
            200
        );
    }

    let path = format!("/api_key/{}", key["id"].as_str().unwrap());
    assert_eq!(
        call(&a.addr, "DELETE", &path, &bearer(&session), None).0,
        200
    );
    let deleted = Instant::now();
    loop {
        match call(&b.addr, "GET", "/data", &bearer(&reader), None).0 {
            401 => break,
            200 => assert!(deleted.elapsed() < Duration::from_secs(1), "still accepted"),
            other => panic!("unexpected {other}"),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `PgConfig`'s default lag limit.
const LAG_LIMIT: Duration = Duration::from_millis(200);

/// Runs `ip` with `args`; whether it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Two hosts (network namespaces joined to this one by veth links) and the
/// routes added for them, all removed when dropped.
struct Hosts {
    names: [String; 2],
    routes: Vec<String>,
}

impl Hosts {
    /// Host `a` at `{net}.1.2`, reaching this host at `{net}.1.3` from
    /// `{net}.1.4` (so a route to `{net}.1.4` cuts only that path); host `b` at
    /// `{net}.2.2`, reaching this host at `{net}.2.1`. `None` where the machine
    /// does not allow namespaces.
    fn new(net: &str) -> Option<Self> {
        let tag = std::process::id() % 100_000;
        let names = [format!("sg{tag}a"), format!("sg{tag}b")];
        if !ip(&["netns", "add", &names[0]]) {
            return None;
        }
        let hosts = Self {
            names,
            routes: Vec::new(),
        };
        assert!(ip(&["netns", "add", &hosts.names[1]]));
        for (n, name) in hosts.names.iter().enumerate() {
            let (outer, inner) = (format!("{name}0"), format!("{name}1"));
            let subnet = format!("{net}.{}", n + 1);
            let here = |args: &[&str]| assert!(ip(args), "ip {args:?}");
            let inside = |args: &[&str]| {
                let all = [&["netns", "exec", name, "ip"], args].concat();
                assert!(ip(&all), "in {name}: ip {args:?}");
            };
            here(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            here(&["link", "set", &inner, "netns", name]);
            here(&["addr", "add", &format!("{subnet}.1/24"), "dev", &outer]);
            here(&["link", "set", &outer, "up"]);
            inside(&["link", "set", "lo", "up"]);
            inside(&["addr", "add", &format!("{subnet}.2/24"), "dev", &inner]);
            inside(&["link", "set", &inner, "up"]);
            if n == 0 {
                let (to, from) = (format!("{subnet}.3"), format!("{subnet}.4"));
                here(&["addr", "add", &format!("{to}/24"), "dev", &outer]);
                inside(&["addr", "add", &format!("{from}/24"), "dev", &inner]);
                inside(&[
                    "route",
                    "add",
                    &format!("{to}/32"),
                    "dev",
                    &inner,
                    "src",
                    &from,
                ]);
            }
        }
        Some(hosts)
    }

    fn exec(&self, host: usize) -> Command {
        let mut command = Command::new("ip");
        command.args([
            "netns",
            "exec",
            &self.names[host],
            &quickstart_binary().to_string_lossy(),
        ]);
        command
    }

    /// Drops every packet this host sends to `addr`, silently.
    fn blackhole(&mut self, addr: &str) {
        assert!(ip(&["route", "add", "blackhole", &format!("{addr}/32")]));
        self.routes.push(addr.to_owned());
    }

    fn restore(&mut self) {
        for addr in self.routes.drain(..) {
            ip(&["route", "del", "blackhole", &format!("{addr}/32")]);
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.restore();
        for name in &self.names {
            ip(&["netns", "del", name]);
        }
    }
}

#[test]
fn a_replica_on_another_host_cut_off_silently_stops_accepting_a_revoked_token_within_the_lag_limit()
{
    let net = format!("10.{}", 100 + std::process::id() % 100);
    let Some(mut hosts) = Hosts::new(&net) else {
        // Loud here, a failure under CI (which runs as root); elsewhere
        // `postgres_replicas`'s SIGSTOP test still covers a silent listener.
        common::skip("no network namespaces here (needs root and ip netns)");
        return;
    };
    build_postgres_quickstart();
    let url = common::pg_server::database_url().expect("a PostgreSQL database");
    // This host forwards each replica's database connections to the server.
    let forwarding = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = server_of(&url);
    let (to_a, to_b) = forwarding.block_on(async {
        let a = Link::between(format!("{net}.1.3:5432").parse().unwrap(), server);
        let b = Link::between(format!("{net}.2.1:5432").parse().unwrap(), server);
        (a.await, b.await)
    });
    let data = tempfile::tempdir().unwrap();
    let a = start_at(
        hosts.exec(0),
        &format!("{net}.1.2:3000"),
        &to_a.url(&url),
        data.path(),
    );
    let b = start_at(
        hosts.exec(1),
        &format!("{net}.2.2:3000"),
        &to_b.url(&url),
        data.path(),
    );
    let login = || {
        let (status, body) = call(
            &b.addr,
            "POST",
            "/login",
            "Authorization: Basic Ym9iOmJvYi1wYXNz\r\n",
            None,
        );
        assert_eq!(status, 200, "{body}");
        body["auth_token"]["token"].as_str().unwrap().to_owned()
    };
    let token = login();
    for _ in 0..2 {
        assert_eq!(call(&a.addr, "GET", "/me", &bearer(&token), None).0, 200);
    }

    // The database's replies to A go nowhere, and nothing tells A.
    hosts.blackhole(&format!("{net}.1.4"));
    let started = Instant::now();
    assert_eq!(
        call(&b.addr, "DELETE", "/token/session", &bearer(&token), None).0,
        200
    );
    let mut accepted = Duration::ZERO;
    let refused_with = loop {
        match call(&a.addr, "GET", "/me", &bearer(&token), None).0 {
            200 => accepted = started.elapsed(),
            other => break other,
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "A still accepts it"
        );
    };
    // Unknown to A's cache by then, and the database out of reach: 503.
    assert_eq!(refused_with, 503);
    let mut refusals = Vec::new();
    for _ in 0..50 {
        let asked = Instant::now();
        assert_eq!(call(&a.addr, "GET", "/me", &bearer(&token), None).0, 503);
        refusals.push(asked.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    refusals.sort();
    eprintln!(
        "A accepted the revoked token until {accepted:?}; refusals while cut off: p50 {:?}, max {:?}",
        refusals[25], refusals[49]
    );
    assert!(
        accepted < LAG_LIMIT + Duration::from_millis(150),
        "accepted until {accepted:?}"
    );
    // The call limit is 2 s: refusals are the breaker's, not timeouts.
    assert!(refusals[49] < Duration::from_millis(250), "{refusals:?}");

    hosts.restore();
    let fresh = login();
    let back = Instant::now();
    while call(&a.addr, "GET", "/me", &bearer(&fresh), None).0 != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "A did not recover"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(call(&a.addr, "GET", "/me", &bearer(&token), None).0, 401);
}

//! Copies every API key and token from one scopegate store into another, digests
//! and expiries as they are, so a project moves between sled and PostgreSQL
//! without re-issuing a single credential.
//!
//! ```text
//! cargo run --features postgres --example copy_store -- sled:./scopegate-data postgres://localhost/app
//! cargo run --features postgres --example copy_store -- postgres://localhost/app sled:./restored
//! ```
//!
//! Stop the apps using the source first: a revocation made during the copy may
//! not reach the destination. Running it again skips what was already copied.

use std::process::ExitCode;

use scopegate::store::{copy_records, error_chain, PgStore, SledStore, StoreError};

enum Store {
    Sled(SledStore),
    Postgres(PgStore),
}

async fn open(spec: &str) -> Result<Store, String> {
    let failed = |err: StoreError| format!("cannot open {}: {}", redact(spec), error_chain(&err));
    if let Some(path) = spec.strip_prefix("sled:") {
        return SledStore::open(path).map(Store::Sled).map_err(failed);
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return PgStore::connect(spec)
            .await
            .map(Store::Postgres)
            .map_err(failed);
    }
    Err(format!(
        "{}: expected sled:<directory> or a postgres:// URL",
        redact(spec)
    ))
}

/// The spec without a password, for messages.
fn redact(spec: &str) -> String {
    match (spec.find("://"), spec.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &spec[..scheme], &spec[at + 1..])
        }
        _ => spec.to_owned(),
    }
}

async fn copy(from: &str, to: &str) -> Result<(), String> {
    let (source, target) = (open(from).await?, open(to).await?);
    let report = match (&source, &target) {
        (Store::Sled(a), Store::Sled(b)) => copy_records(a, b).await,
        (Store::Sled(a), Store::Postgres(b)) => copy_records(a, b).await,
        (Store::Postgres(a), Store::Sled(b)) => copy_records(a, b).await,
        (Store::Postgres(a), Store::Postgres(b)) => copy_records(a, b).await,
    }
    .map_err(|err| {
        format!(
            "copy failed (run it again to resume): {}",
            error_chain(&err)
        )
    })?;
    println!(
        "copied {} API keys and {} tokens; {} already there",
        report.api_keys, report.tokens, report.already_present
    );
    if !report.differing.is_empty() {
        println!(
            "{} records differ in the destination and were left as they are there: {}",
            report.differing.len(),
            report.differing.join(", ")
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, to] = args.as_slice() else {
        eprintln!("usage: copy_store <from> <to>   (each sled:<directory> or a postgres:// URL)");
        return ExitCode::from(2);
    };
    match copy(from, to).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("copy_store: {message}");
            ExitCode::FAILURE
        }
    }
}

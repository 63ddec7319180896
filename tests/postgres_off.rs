//! Without the `postgres` feature, says how to run the PostgreSQL tests.
#![cfg(not(feature = "postgres"))]

use std::io::Write;

#[test]
fn postgres_tests_need_the_postgres_feature() {
    // Written past the test harness's capture, so it shows in a plain `cargo test`.
    let _ = writeln!(
        std::io::stderr(),
        "note: PostgreSQL tests are off; run them with `cargo test --features postgres` \
         (uses SCOPEGATE_TEST_DATABASE_URL, or starts a throwaway server from the PostgreSQL binaries)"
    );
}

//! The conformance suite on PostgreSQL, with and without the cache, plus what only
//! a shared backend must do: stay correct across instances.
#![cfg(feature = "postgres")]

mod common;

mod plain {
    use crate::conformance_tests;
    conformance_tests!(crate::common::pg::PgBackend);
}

mod cached {
    use crate::conformance_tests;
    conformance_tests!(crate::common::pg::CachedPgBackend);
}

//! Which store the tests run on. `./scripts/test` runs the suite once on
//! SQLite and once on PostgreSQL (`HERALD_TEST_STORE=postgres`, with
//! `HERALD_TEST_PG_URL` pointing at the throwaway server it started, or at
//! one of yours). On PostgreSQL every herald under test gets a database of
//! its own, so tests stay independent.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether this run is on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("HERALD_TEST_STORE").is_ok_and(|s| s == "postgres")
}

/// A fresh store URL for one herald: an SQLite file in `dir`, or a new
/// PostgreSQL database.
pub fn url(dir: &Path) -> String {
    if on_postgres() {
        new_database()
    } else {
        format!("sqlite://{}", dir.join("herald.db").display())
    }
}

fn new_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let admin = std::env::var("HERALD_TEST_PG_URL")
        .expect("HERALD_TEST_STORE=postgres needs HERALD_TEST_PG_URL (./scripts/test sets both)");
    let name = format!(
        "herald_test_{}_{}_{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand_suffix()
    );
    let statement = format!("CREATE DATABASE {name}");
    let admin_for_thread = admin.clone();
    // Tests call this from inside their own runtime: connect from a
    // thread with a runtime of its own.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin_for_thread)
                .await
                .expect("connect to HERALD_TEST_PG_URL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .expect("create a test database");
        });
    })
    .join()
    .expect("create a test database");
    let mut url = reqwest::Url::parse(&admin).expect("HERALD_TEST_PG_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

//! Throwaway PostgreSQL databases for tests (unit and integration): each test creates its own
//! database on the test server and drops it at the end. Not used by the program itself.
//!
//! The server is `$INFERTUNE_TEST_PG` (a URL of a database the tests may create databases
//! from, set by `scripts/test` via `scripts/setup-postgres`), else one answering on
//! 127.0.0.1:5432 as user `postgres`. Without either, tests that need it fail with the set-up
//! command, as engine tests do without the engine.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The admin URL of the test server.
pub fn server_url() -> String {
    match std::env::var("INFERTUNE_TEST_PG") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let answers = std::net::TcpStream::connect_timeout(
                &"127.0.0.1:5432".parse().expect("a socket address"),
                std::time::Duration::from_secs(1),
            )
            .is_ok();
            assert!(
                answers,
                "no PostgreSQL for the tests: set INFERTUNE_TEST_PG to a server URL, or run \
                 scripts/setup-postgres (it prints one), or start a server on 127.0.0.1:5432"
            );
            "postgres://postgres@127.0.0.1:5432/postgres".to_string()
        }
    }
}

/// A database created for one test; [`TestDb::drop_db`] removes it.
pub struct TestDb {
    admin: String,
    /// Its name.
    pub name: String,
    /// Its URL (the admin URL with the database replaced).
    pub url: String,
}

impl TestDb {
    /// Create a fresh, empty database on the test server.
    pub async fn create(label: &str) -> TestDb {
        TestDb::create_on(&server_url(), label).await
    }

    /// Create a fresh, empty database on the server at `admin` (a URL).
    pub async fn create_on(admin: &str, label: &str) -> TestDb {
        let admin = admin.to_string();
        let name = format!(
            "infertune_test_{}_{}_{}",
            label.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connecting to the test PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("creating a test database");
        conn.close().await.ok();
        let mut url = url::Url::parse(&admin).expect("the test server URL parses");
        url.set_path(&name);
        TestDb { admin, url: url.to_string(), name }
    }

    /// Drop the database (closing what is still connected to it).
    pub async fn drop_db(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin).await.expect("connecting to the test PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&mut conn)
            .await
            .expect("dropping a test database");
        conn.close().await.ok();
    }
}

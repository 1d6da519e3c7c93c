//! A fresh PostgreSQL database per test, on the cluster named by
//! `ANCHORBOT_TEST_DATABASE_URL` (an admin URL; `.ci/postgres.sh start` prints one). Without
//! it the PostgreSQL half of the store tests is skipped, unless `ANCHORBOT_REQUIRE_POSTGRES=1`
//! (as in CI), when it fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};

/// The admin URL of the test cluster.
pub const URL_VAR: &str = "ANCHORBOT_TEST_DATABASE_URL";
/// Set to `1` to fail, rather than skip, when there is no test cluster.
pub const REQUIRE_VAR: &str = "ANCHORBOT_REQUIRE_POSTGRES";
/// The CA certificate of the test cluster's TLS certificate, when it has TLS.
pub const CA_VAR: &str = "ANCHORBOT_TEST_DATABASE_CA";

/// A database created for one test, dropped (with its connections) when this is.
pub struct TestDb {
    /// Its URL, with the cluster's password.
    pub url: SecretString,
    /// Its name.
    pub name: String,
    admin: String,
}

impl TestDb {
    /// Its URL as text (tests that edit it: a wrong password, TLS options).
    pub fn url_text(&self) -> String {
        self.url.expose_secret().to_string()
    }

    /// The password in its URL.
    pub fn password(&self) -> String {
        url::Url::parse(self.url.expose_secret())
            .expect("the test URL parses")
            .password()
            .unwrap_or_default()
            .to_string()
    }

    /// A connection of its own (for what the store does not expose: the schema's version).
    pub async fn connection(&self) -> PgConnection {
        PgConnection::connect(self.url.expose_secret())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Its own thread and runtime: this may run inside (or outside) a test's runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("test database {} was not dropped: {e}", self.name);
        }
    }
}

/// A fresh, empty database on the test cluster; `None` (with a note) when there is none and
/// it is not required.
pub async fn database() -> Option<TestDb> {
    let admin = admin_url()?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "anchorbot_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("{URL_VAR} is set but the cluster refuses a connection: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    conn.close().await.ok();
    let mut url = url::Url::parse(&admin).expect("the test URL parses");
    url.set_path(&format!("/{name}"));
    Some(TestDb {
        url: SecretString::from(url.to_string()),
        name,
        admin,
    })
}

/// The admin URL, or `None` with a note on stderr; panics when PostgreSQL is required.
pub fn admin_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if required() => panic!(
            "{REQUIRE_VAR}=1 but {URL_VAR} is not set: start a cluster with \
             `eval \"$(.ci/postgres.sh start)\"` (see .ci/run)"
        ),
        _ => {
            eprintln!(
                "PostgreSQL half skipped: {URL_VAR} is not set (`eval \"$(.ci/postgres.sh start)\"` starts a cluster)"
            );
            None
        }
    }
}

/// Whether PostgreSQL tests must run (CI).
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

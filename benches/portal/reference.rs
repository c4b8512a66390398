//! The same-run references the service's figures are compared with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{ConnectionTrait, Database};

/// `pgbench`'s rate of one-row inserts, one transaction each, from
/// `clients` connections on the given database.
pub async fn pgbench_inserts(url: &str, clients: usize, seconds: Duration) -> f64 {
    let db = Database::connect(url).await.unwrap();
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS bench_reference (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .unwrap();
    db.close().await.ok();
    let script = std::env::temp_dir().join(format!("pa-pgbench-{}.sql", uuid::Uuid::new_v4()));
    std::fs::write(
        &script,
        "INSERT INTO bench_reference (payload) VALUES ('support action');\n",
    )
    .unwrap();
    let output = std::process::Command::new("pgbench")
        .args(["-n", "-c", &clients.to_string(), "-j", "2", "-T"])
        .arg(seconds.as_secs().max(1).to_string())
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .expect("run pgbench");
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's output: {text}"))
}

/// Raw SQLite commits per second on the same disk, with the server's
/// settings (WAL, synchronous=NORMAL): `clients` tasks each committing one
/// one-row insert per transaction.
pub async fn sqlite_commits(dir: &std::path::Path, clients: usize, seconds: Duration) -> f64 {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("reference.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(clients as u32)
        .connect_with(options)
        .await
        .unwrap();
    sea_orm::sqlx::query(
        "CREATE TABLE IF NOT EXISTS reference (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let commits = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + seconds;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let pool = pool.clone();
        let commits = commits.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let mut conn = pool.acquire().await.unwrap();
                sea_orm::sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                sea_orm::sqlx::query("INSERT INTO reference (payload) VALUES ('support action')")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                sea_orm::sqlx::query("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    pool.close().await;
    commits.load(Ordering::Relaxed) as f64 / elapsed
}

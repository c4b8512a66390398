//! `portal-access backup --to FILE` (docs/operations.md, "Backup and
//! restore"): a consistent copy of the live SQLite database while the
//! server takes writes, with its generated key file beside it.

use std::collections::BTreeSet;
use std::path::Path;

use portal_access::proto::v1 as pb;
use tokio::sync::{mpsc, watch};

use crate::helpers::*;
use crate::people::learner_request;
use crate::process::ServerProcess;

/// Writes acknowledged before the backup starts; a few writers keep going
/// while it runs.
const ACKNOWLEDGED_BEFORE_BACKUP: usize = 30;
const WRITERS: usize = 4;

#[tokio::test(flavor = "multi_thread")]
async fn backup_during_writes_restores_every_acknowledged_write() {
    let dir = std::env::temp_dir().join(format!("portal-access-backup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let live = dir.join("live.db");
    // The secret the server generates beside its database on first start;
    // written here so the test's tokens match it.
    write_private(&dir.join("live.db.jwt-secret"), TEST_SECRET);
    let server = serve_generated_secret(&sqlite_url(&live)).await;
    let api = server.client(Backend::Sqlite, &sqlite_url(&live)).await;
    let realm = api.create_realm("backup").await;

    let (acked_tx, mut acked) = mpsc::unbounded_channel::<String>();
    let (stop_tx, stop) = watch::channel(false);
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let admins = api.admins();
            let (realm, acked_tx, mut stop) = (realm.clone(), acked_tx.clone(), stop.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    if *stop.borrow_and_update() {
                        return;
                    }
                    let email = format!("w{writer}-{n}@backup.example");
                    let user = admins
                        .clone()
                        .create_user(with_token(
                            learner_request(&realm.top_portal_id, &email, "Writer"),
                            &realm.admin_token,
                        ))
                        .await
                        .expect("write while backing up")
                        .into_inner()
                        .user
                        .unwrap();
                    // Sent only after the answer: each id was acknowledged.
                    let _ = acked_tx.send(user.user_id);
                }
            })
        })
        .collect();
    drop(acked_tx);

    let mut before = BTreeSet::new();
    while before.len() < ACKNOWLEDGED_BEFORE_BACKUP {
        before.insert(acked.recv().await.expect("writers run"));
    }
    while let Ok(id) = acked.try_recv() {
        before.insert(id);
    }

    let copy = dir.join("copy.db");
    let backup = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-access"))
        .args(["backup", "--to"])
        .arg(&copy)
        .env("DATABASE_URL", sqlite_url(&live))
        .env_remove("PORTAL_ACCESS_JWT_SECRET")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .await
        .expect("run backup");
    let mut during = 0;
    while acked.try_recv().is_ok() {
        during += 1;
    }
    let _ = stop_tx.send(true);
    for writer in writers {
        writer.await.expect("writer");
    }
    let output = String::from_utf8_lossy(&backup.stdout);
    assert!(backup.status.success(), "backup failed: {output}");
    let copied_secret = dir.join("copy.db.jwt-secret");
    assert!(
        output.contains(&copied_secret.display().to_string()),
        "the output names the key file to keep: {output}"
    );
    assert_eq!(
        std::fs::read_to_string(&copied_secret).expect("the secret is copied"),
        TEST_SECRET
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copied_secret)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the copied secret stays private");
    }
    println!(
        "{} writes acknowledged before the backup, {during} while it ran",
        before.len()
    );

    // Restore: a fresh server on the copy, with only the copied key file.
    drop(api);
    drop(server);
    let restored = serve_generated_secret(&sqlite_url(&copy)).await;
    let api = restored.client(Backend::Sqlite, &sqlite_url(&copy)).await;
    for user_id in &before {
        api.admins()
            .get_user(with_token(
                pb::GetUserRequest {
                    user_id: user_id.clone(),
                },
                &realm.admin_token,
            ))
            .await
            .unwrap_or_else(|e| panic!("user {user_id}, acknowledged before the backup: {e}"));
    }
    let verified = crate::faults::verify_realm(&api, &realm).await;
    assert!(verified.intact, "the restored audit log verifies");
    assert!(verified.event_count as usize > before.len());

    drop(api);
    drop(restored);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn backup_refuses_postgres_and_points_to_the_guide() {
    let backup = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-access"))
        .args(["backup", "--to", "/nonexistent/copy.db"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("PORTAL_ACCESS_LOG_FORMAT", "text")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .await
        .expect("run backup");
    assert!(!backup.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&backup.stdout),
        String::from_utf8_lossy(&backup.stderr)
    );
    assert!(printed.contains("pg_dump"), "{printed}");
    assert!(printed.contains("docs/operations.md"), "{printed}");
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// The binary on `url` with no configured secret: it uses the key file
/// beside the database, as the embedded default does.
async fn serve_generated_secret(url: &str) -> ServerProcess {
    let mut command = ServerProcess::command(env!("CARGO_BIN_EXE_portal-access"), url);
    command.env_remove("PORTAL_ACCESS_JWT_SECRET");
    ServerProcess::spawn(command).await
}

fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

//! One version everywhere (docs/operations.md, "Releases"): `Cargo.toml`,
//! `portal-access --version` and the server's start-up log agree.

use crate::process::ServerProcess;

#[tokio::test]
async fn version_agrees_in_cargo_toml_the_binary_and_the_start_log() {
    let version = env!("CARGO_PKG_VERSION");
    let printed = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-access"))
        .arg("--version")
        .output()
        .await
        .expect("run --version");
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout).trim(),
        format!("portal-access {version}")
    );

    let manifest = include_str!("../../Cargo.toml");
    assert!(
        manifest.contains(&format!("\nversion = \"{version}\"\n")),
        "Cargo.toml's package version is {version}"
    );

    let dir = std::env::temp_dir().join(format!("portal-access-version-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}/version.db?mode=rwc", dir.display());
    let server = ServerProcess::start(&url, &[]).await;
    let started = server
        .startup
        .iter()
        .find(|line| line["version"].is_string())
        .expect("the start-up log names the version");
    assert_eq!(started["version"], version);
    assert_eq!(
        started["message"],
        format!("starting portal-access {version}")
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

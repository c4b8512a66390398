//! The previous release's binary, built from the commit `RELEASES` records
//! (its last line), for the two-version test of a rolling update.
//!
//! The release's source is exported with `git archive` (works from a fresh
//! clone and from a git worktree, and leaves no worktree to clean up) into
//! `target/previous-release/<version>/src` and built there with a target
//! directory of its own, seeded from this build's dependencies. The binary
//! is kept, keyed by the commit: a second run reuses it (the first build
//! took 6 minutes on a shared 2-core machine; a cached run about 2 s).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A release recorded in `RELEASES`.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    pub commit: String,
}

/// The last line of `RELEASES`: `v0.1.0 <40-hex commit>`.
pub fn last_release() -> Release {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("RELEASES")).expect("read RELEASES");
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !line.starts_with('#'))
        .expect("RELEASES names a release");
    let (version, commit) = line
        .split_once(char::is_whitespace)
        .expect("a RELEASES line is `<version> <commit>`");
    Release {
        version: version.to_owned(),
        commit: commit.trim().to_owned(),
    }
}

/// The release's `portal-access` binary, built on first use.
pub fn binary(release: &Release) -> PathBuf {
    let this_binary = Path::new(env!("CARGO_BIN_EXE_portal-access"));
    let profile_dir = this_binary.parent().expect("the binary's directory");
    let target_dir = profile_dir.parent().expect("the target directory");
    let home = target_dir.join("previous-release").join(&release.version);
    let built = home.join("target/debug/portal-access");
    let stamp = home.join("built-from");
    if built.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&release.commit) {
        return built;
    }

    let started = Instant::now();
    let source = home.join("src");
    let _ = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(&source).expect("create the release's source directory");
    export_source(&release.commit, &source);
    seed_dependencies(profile_dir, &home.join("target/debug"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--locked", "--bin", "portal-access"])
        .current_dir(&source)
        .env("CARGO_TARGET_DIR", home.join("target"));
    // The variables cargo sets for this test describe this build, not that one.
    for (name, _) in std::env::vars() {
        if name.starts_with("CARGO_") && name != "CARGO_HOME" {
            build.env_remove(name);
        }
    }
    let status = build.status().expect("run cargo build");
    assert!(
        status.success(),
        "building {} ({}) failed",
        release.version,
        release.commit
    );
    std::fs::write(&stamp, &release.commit).expect("stamp the build");
    println!(
        "built {} ({}) in {:.0?}",
        release.version,
        &release.commit[..12],
        started.elapsed()
    );
    built
}

/// `git archive <commit> | tar -x -C <into>`.
fn export_source(commit: &str, into: &Path) {
    let root = env!("CARGO_MANIFEST_DIR");
    let archive = Command::new("git")
        .args(["-C", root, "archive", "--format=tar", commit])
        .output()
        .expect("run git archive");
    assert!(
        archive.status.success(),
        "git archive {commit}: {} (a shallow clone needs `git fetch --depth=1 origin {commit}`)",
        String::from_utf8_lossy(&archive.stderr)
    );
    let mut tar = Command::new("tar")
        .args(["-x", "-C"])
        .arg(into)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run tar");
    use std::io::Write;
    tar.stdin
        .take()
        .expect("tar's stdin")
        .write_all(&archive.stdout)
        .expect("feed tar");
    assert!(tar.wait().expect("wait for tar").success(), "tar -x failed");
}

/// Copies this build's compiled dependencies into the release's target
/// directory the first time, so cargo reuses every crate compiled with the
/// same version and features (crates that the test build compiles with
/// dev-dependency features, tokio and what depends on it, are compiled
/// again). Our own crate's artifacts are left out: the release's build
/// script must generate its own code from its own contract (cargo would
/// otherwise take this build's generated code as fresh). Best effort:
/// without it cargo builds everything.
fn seed_dependencies(from: &Path, to: &Path) {
    if to.exists() {
        return;
    }
    for part in ["deps", "build", ".fingerprint"] {
        let into = to.join(part);
        std::fs::create_dir_all(&into).expect("create the release's target directory");
        let Ok(entries) = std::fs::read_dir(from.join(part)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("portal-access") || name.starts_with("portal_access") {
                continue;
            }
            let _ = Command::new("cp")
                .arg("-a")
                .arg(entry.path())
                .arg(&into)
                .status();
        }
    }
}

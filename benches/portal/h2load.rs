//! Unary gRPC load from `h2load` (nghttp2): a 5-byte-prefixed protobuf body
//! with `content-type: application/grpc` and `te: trailers` (SPEC §8).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use prost::Message;

/// What one h2load run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: u64,
}

pub struct Call<'a> {
    pub addr: SocketAddr,
    pub path: &'a str,
    pub token: Option<&'a str>,
    pub body: Vec<u8>,
}

/// One message as a gRPC frame: uncompressed flag, length, bytes.
pub fn frame(message: &impl Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut framed = Vec::with_capacity(bytes.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    framed.extend_from_slice(&bytes);
    framed
}

/// Drives `call` over `connections` connections (one call in flight on
/// each) for `seconds` after a one-second warm-up.
pub fn run(call: &Call, connections: usize, seconds: Duration) -> Load {
    let dir = std::env::temp_dir().join(format!("pa-h2load-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = dir.join("body.bin");
    let log = dir.join("log.tsv");
    std::fs::write(&body, &call.body).unwrap();
    let mut command = Command::new("h2load");
    command
        .arg("-c")
        .arg(connections.to_string())
        .arg("-m1")
        .arg("-t1")
        .arg("-D")
        .arg(seconds.as_secs().max(1).to_string())
        .arg("--warm-up-time=1")
        .arg("-d")
        .arg(&body)
        .arg("--log-file")
        .arg(&log)
        .arg("-H")
        .arg("content-type: application/grpc")
        .arg("-H")
        .arg("te: trailers");
    if let Some(token) = call.token {
        command
            .arg("-H")
            .arg(format!("authorization: Bearer {token}"));
    }
    command.arg(format!("http://{}{}", call.addr, call.path));
    let output = command
        .output()
        .expect("run h2load (Debian package nghttp2-client)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "h2load failed: {text}");
    let rps = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|p| p.trim_end_matches(" req/s").parse().ok())
        .unwrap_or_else(|| panic!("no req/s in h2load's output: {text}"));
    let failed = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .and_then(|l| {
            l.split(", ")
                .find(|p| p.ends_with("failed"))
                .map(str::to_owned)
        })
        .and_then(|p| p.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    // The log: start time, HTTP status, duration in microseconds.
    let mut durations: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('\t').nth(2).and_then(|d| d.trim().parse().ok()))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    durations.sort_unstable();
    Load {
        rps,
        p50_ms: percentile_us(&durations, 0.50) / 1000.0,
        p99_ms: percentile_us(&durations, 0.99) / 1000.0,
        failed,
    }
}

pub fn percentile_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64
}

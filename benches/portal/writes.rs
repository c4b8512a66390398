//! Audited writes that are not batched by the server (W1, W3): `CreateUser`
//! spread over many realms against the same load aimed at one realm, and
//! `ImportUsers` of 1,000 users per call into one realm. h2load repeats one
//! request body, and these need a new email on every call, so they are
//! driven by tonic clients, closed loop, one HTTP/2 connection each.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portal_access::proto::v1 as pb;
use portal_access::proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::seed::{Realm, with_token};

/// Calls made in a closed loop, and their latencies.
pub struct Calls {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: usize,
    /// CPU per successful call (µs) of the bench client (this process), the
    /// server and PostgreSQL's processes: what the machine's two shared
    /// cores were spent on, so the figure can be read as the server's.
    pub cpu_us: Option<CpuPerCall>,
}

#[derive(Clone, Copy)]
pub struct CpuPerCall {
    pub client: f64,
    pub server: f64,
    pub postgres: f64,
}

impl std::fmt::Display for CpuPerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU/call: client {:.0} µs, server {:.0} µs, postgres {:.0} µs",
            self.client, self.server, self.postgres
        )
    }
}

/// CPU ticks (user + system) of every process named `comm`, or of `pid`.
fn cpu_ticks(select: impl Fn(u32, &str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": fields after the comm's closing paren.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !select(pid, &stat[open + 1..close]) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line.
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        total += ticks(11) + ticks(12);
    }
    total
}

/// A snapshot of the three CPU counters.
struct CpuMark {
    client: u64,
    server: u64,
    postgres: u64,
}

impl CpuMark {
    fn now(server_pid: u32) -> CpuMark {
        let me = std::process::id();
        CpuMark {
            client: cpu_ticks(|pid, _| pid == me),
            server: cpu_ticks(|pid, _| pid == server_pid),
            postgres: cpu_ticks(|_, comm| comm == "postgres"),
        }
    }

    fn per_call(&self, later: &CpuMark, calls: usize) -> CpuPerCall {
        // Linux reports CPU time in ticks of 1/100 s.
        let us = |a: u64, b: u64| (b.saturating_sub(a)) as f64 * 10_000.0 / calls.max(1) as f64;
        CpuPerCall {
            client: us(self.client, later.client),
            server: us(self.server, later.server),
            postgres: us(self.postgres, later.postgres),
        }
    }
}

async fn connection(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect to the bench server")
}

fn summarize(mut latencies: Vec<f64>, failed: usize, elapsed: Duration) -> Calls {
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Calls {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        failed,
        cpu_us: None,
    }
}

/// `clients` closed-loop clients calling CreateUser for `seconds`, client
/// `i` in `realms[i % realms.len()]`. `run` keeps emails of runs apart.
pub async fn create_users(
    addr: SocketAddr,
    server_pid: u32,
    realms: &[Realm],
    clients: usize,
    seconds: Duration,
    run: &str,
) -> Calls {
    let mut channels = Vec::with_capacity(clients);
    for _ in 0..clients {
        channels.push(connection(addr).await);
    }
    let before = CpuMark::now(server_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let realm = &realms[client % realms.len()];
        let (token, portal) = (realm.admin_token.clone(), realm.top_portal_id.clone());
        let channel = channels[client].clone();
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut admins = AdminServiceClient::new(channel);
            let (mut latencies, mut failed) = (Vec::new(), 0);
            let mut n = 0;
            while started.elapsed() < seconds {
                let request = pb::CreateUserRequest {
                    request_id: String::new(),
                    portal_id: portal.clone(),
                    email: format!("{run}-{client}-{n}@bench.example"),
                    display_name: "Learner".into(),
                    user_type: pb::UserType::Learner as i32,
                    invite: false,
                    can_access_portal_settings: None,
                };
                n += 1;
                let call = Instant::now();
                match admins.create_user(with_token(request, &token)).await {
                    Ok(_) => latencies.push(call.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => failed += 1,
                }
            }
            (latencies, failed)
        }));
    }
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failed += f;
    }
    let elapsed = started.elapsed();
    let cpu = before.per_call(&CpuMark::now(server_pid), latencies.len());
    let mut calls = summarize(latencies, failed, elapsed);
    calls.cpu_us = Some(cpu);
    calls
}

/// `in_flight` clients, each on its own connection, importing batches of
/// `batch` learners into `realm` for `seconds` (a bulk-import worker that
/// keeps that many calls open); `per_second` counts users, the latencies
/// are per call. `run` keeps emails of runs apart.
pub async fn import_users(
    addr: SocketAddr,
    realm: &Realm,
    batch: usize,
    in_flight: usize,
    seconds: Duration,
    run: &str,
) -> (Calls, f64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..in_flight {
        let mut admins = AdminServiceClient::new(connection(addr).await);
        let (portal_id, token) = (realm.top_portal_id.clone(), realm.admin_token.clone());
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0);
            let mut call = 0;
            while started.elapsed() < seconds {
                let users = (0..batch)
                    .map(|i| pb::UserToImport {
                        email: format!("import-{run}-{client}-{call}-{i}@bench.example"),
                        display_name: "Learner".into(),
                        user_type: pb::UserType::Learner as i32,
                        invite: false,
                        can_access_portal_settings: None,
                    })
                    .collect();
                call += 1;
                let request = pb::ImportUsersRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    portal_id: portal_id.clone(),
                    users,
                };
                let sent = Instant::now();
                match admins.import_users(with_token(request, &token)).await {
                    Ok(_) => latencies.push(sent.elapsed().as_secs_f64() * 1000.0),
                    Err(status) => {
                        eprintln!("ImportUsers failed: {status:?}");
                        failed += 1;
                    }
                }
            }
            (latencies, failed)
        }));
    }
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failed += f;
    }
    let elapsed = started.elapsed();
    let users_per_second = (latencies.len() * batch) as f64 / elapsed.as_secs_f64();
    (summarize(latencies, failed, elapsed), users_per_second)
}

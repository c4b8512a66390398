//! `cargo bench`: the hot paths of SPEC §8 on the real release server, on
//! SQLite and on PostgreSQL, each figure beside a reference measured in the
//! same run; the table goes to stdout and to `benches/RESULTS.md`.
//!
//! Settings (environment):
//! - `PORTAL_ACCESS_BENCH_POSTGRES` (else `PORTAL_ACCESS_TEST_POSTGRES`):
//!   the PostgreSQL server; `none` or unset skips PostgreSQL.
//! - `PORTAL_ACCESS_BENCH_SECONDS` (5): length of each load run.
//! - `PORTAL_ACCESS_BENCH_PORTALS` (10000), `_ACCOUNTS` (1000000): scale.
//! - `PORTAL_ACCESS_BENCH_EVENTS` (1000000): events in the evidence realm.
//! - `PORTAL_ACCESS_BENCH_BASELINE`: another build's `portal-access` binary
//!   (e.g. the last release, built with `--release`); `CheckPermission` is
//!   then also measured on it, same run, same database.
//! - `PORTAL_ACCESS_BENCH_ONLY`: some of
//!   `check,write,create,import,allow,stream,evidence,scale`.
//! - `PORTAL_ACCESS_BENCH_DATABASES` (`sqlite,postgres`): which to run.

mod broadcast;
mod evidence;
mod h2load;
mod reference;
mod report;
mod seed;
mod server;
mod stream;
mod writes;

use std::time::{Duration, Instant};

use portal_access::proto::v1 as pb;
use portal_access::proto::v1::admin_service_client::AdminServiceClient;
use portal_access::proto::v1::portal_service_client::PortalServiceClient;
use portal_access::proto::v1::support_access_service_client::SupportAccessServiceClient;
use uuid::Uuid;

use h2load::{Call, Load, frame};
use report::{Report, Row, Verdict};
use seed::with_token;
use server::{Backend, BenchDb, Server};

struct Settings {
    seconds: Duration,
    portals: u64,
    accounts: u64,
    events: u64,
    postgres: Option<String>,
    only: Option<Vec<String>>,
    databases: Vec<String>,
}

impl Settings {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Settings {
            seconds: Duration::from_secs(
                var("PORTAL_ACCESS_BENCH_SECONDS").map_or(5, |v| v.parse().unwrap()),
            ),
            portals: var("PORTAL_ACCESS_BENCH_PORTALS").map_or(10_000, |v| v.parse().unwrap()),
            accounts: var("PORTAL_ACCESS_BENCH_ACCOUNTS").map_or(1_000_000, |v| v.parse().unwrap()),
            events: var("PORTAL_ACCESS_BENCH_EVENTS").map_or(1_000_000, |v| v.parse().unwrap()),
            postgres: var("PORTAL_ACCESS_BENCH_POSTGRES")
                .or_else(|| var("PORTAL_ACCESS_TEST_POSTGRES"))
                .filter(|v| v != "none"),
            only: var("PORTAL_ACCESS_BENCH_ONLY")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect()),
            databases: var("PORTAL_ACCESS_BENCH_DATABASES")
                .unwrap_or_else(|| "sqlite,postgres".to_owned())
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect(),
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from arguments.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let settings = Settings::from_env();
    let machine = report::machine();
    println!("portal-access benchmarks — {machine}");
    let mut report = Report::default();
    let wanted = |name: &str| settings.databases.iter().any(|d| d == name);
    let mut backends = Vec::new();
    if wanted("sqlite") {
        backends.push(Backend::Sqlite);
    }
    if settings.postgres.is_some() && wanted("postgres") {
        backends.push(Backend::Postgres);
    } else if settings.postgres.is_none() {
        println!("PostgreSQL skipped: set PORTAL_ACCESS_BENCH_POSTGRES");
    }
    for backend in backends {
        bench_backend(backend, &settings, &mut report).await;
    }
    let table = report.markdown(&machine);
    println!("\n{table}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/RESULTS.md");
    std::fs::write(
        path,
        format!("# Benchmark results\n\nWritten by `cargo bench` (see the README).\n\n{table}"),
    )
    .unwrap();
    println!("written to {path}");
}

fn x(ratio: f64) -> String {
    format!("{ratio:.2}×")
}

fn calls(calls: &writes::Calls) -> String {
    format!(
        "{:.0} rps, p50 {:.2} ms, p99 {:.2} ms{}",
        calls.per_second,
        calls.p50_ms,
        calls.p99_ms,
        if calls.failed > 0 {
            format!(", {} failed", calls.failed)
        } else {
            String::new()
        }
    )
}

fn rps(load: &Load) -> String {
    format!(
        "{:.0} rps, p50 {:.2} ms, p99 {:.2} ms{}",
        load.rps,
        load.p50_ms,
        load.p99_ms,
        if load.failed > 0 {
            format!(", {} failed", load.failed)
        } else {
            String::new()
        }
    )
}

async fn bench_backend(backend: Backend, settings: &Settings, report: &mut Report) {
    let db = BenchDb::create(backend, settings.postgres.as_deref()).await;
    let server = Server::start(&db.url, &[]).await;
    let channel = server.channel().await;
    let name = backend.name();
    let (idle_rss, _) = server.rss_kib();
    report.add(Row {
        what: "idle RSS after start-up".into(),
        backend: name,
        measured: format!("{:.1} MB", idle_rss as f64 / 1024.0),
        reference: "—".into(),
        ratio: "—".into(),
        target: "≤ 20 MB",
        verdict: Verdict::of(idle_rss as f64 / 1024.0 <= 20.0),
    });

    let realm = seed::create_realm(&server, &channel, "hot").await;
    let sub = seed::sub_portals(&channel, &realm, "hot", 1)
        .await
        .remove(0);
    let learner = seed::learner(&channel, &realm, &sub, "learner@hot.example").await;
    let checker = server.token("service", Uuid::new_v4(), |c| {
        c.scopes = Some(vec![
            "permissions.check".into(),
            "support_actions.record".into(),
            "audit.read".into(),
        ]);
    });
    let check = pb::CheckPermissionRequest {
        portal_id: sub.clone(),
        permission: pb::Permission::ViewPortal as i32,
        user_id: learner.clone(),
    };
    // The call h2load repeats must be one the server answers with OK.
    AdminServiceClient::new(channel.clone())
        .check_permission(with_token(check.clone(), &checker))
        .await
        .expect("CheckPermission works before it is measured");

    if settings.runs("check") {
        let health = Call {
            addr: server.addr,
            path: "/grpc.health.v1.Health/Check",
            token: None,
            body: frame(&tonic_health::pb::HealthCheckRequest::default()),
        };
        let permission = Call {
            addr: server.addr,
            path: "/portal_access.v1.AdminService/CheckPermission",
            token: Some(&checker),
            body: frame(&check),
        };
        for connections in [1, 16, 64] {
            let reference = h2load::run(&health, connections, settings.seconds);
            let measured = h2load::run(&permission, connections, settings.seconds);
            let ratio = measured.rps / reference.rps;
            let (target, verdict) = if connections == 16 {
                (
                    "≥ 0.9× Health/Check; p99 ≤ 5 ms",
                    Verdict::of(ratio >= 0.9 && measured.p99_ms <= 5.0 && measured.failed == 0),
                )
            } else {
                ("(context)", Verdict::Info)
            };
            report.add(Row {
                what: format!("CheckPermission, {connections} connections"),
                backend: name,
                measured: rps(&measured),
                reference: format!("Health/Check {}", rps(&reference)),
                ratio: x(ratio),
                target,
                verdict,
            });
        }
    }

    if settings.runs("check")
        && let Ok(baseline) = std::env::var("PORTAL_ACCESS_BENCH_BASELINE")
    {
        bench_check_against_baseline(
            &baseline, &db, &server, &checker, &check, settings, report, name,
        )
        .await;
    }

    let agent = seed::agent(&server, "Bench Agent");
    let temporary_admin = seed::active_grant(&channel, &realm, &agent).await;
    let action = pb::RecordSupportActionRequest {
        request_id: String::new(),
        portal_id: realm.top_portal_id.clone(),
        temporary_admin_id: temporary_admin.clone(),
        action: "course.viewed".into(),
        target_type: "course".into(),
        target_id: "course-42".into(),
        details: Default::default(),
        agent_id: agent.id.to_string(),
        agent_name: agent.name.clone(),
    };
    let first = SupportAccessServiceClient::new(channel.clone())
        .record_support_action(with_token(action.clone(), &checker))
        .await
        .expect("RecordSupportAction works before it is measured")
        .into_inner()
        .event
        .unwrap();

    if settings.runs("write") {
        let write = Call {
            addr: server.addr,
            path: "/portal_access.v1.SupportAccessService/RecordSupportAction",
            token: Some(&checker),
            body: frame(&action),
        };
        let measured = h2load::run(&write, 16, settings.seconds);
        let (reference, label, target, floor) = match backend {
            Backend::Postgres => (
                reference::pgbench_inserts(&db.url, 16, settings.seconds).await,
                "pgbench one-row inserts",
                "≥ 0.8× pgbench inserts",
                0.8,
            ),
            Backend::Sqlite => (
                reference::sqlite_commits(db.dir.as_ref().unwrap(), 16, settings.seconds).await,
                "raw SQLite commits",
                "≥ 0.5× raw SQLite commits",
                0.5,
            ),
        };
        let ratio = measured.rps / reference;
        report.add(Row {
            what: "RecordSupportAction (audited write), 16 connections".into(),
            backend: name,
            measured: rps(&measured),
            reference: format!("{label} {reference:.0}/s"),
            ratio: x(ratio),
            target,
            verdict: Verdict::of(ratio >= floor && measured.failed == 0),
        });
    }

    if settings.runs("create") {
        // W1: audited writes of different realms must not wait on each
        // other. The same 16 clients, spread over 16 realms, then all in one.
        let mut realms = Vec::new();
        for r in 0..16 {
            realms.push(seed::create_realm(&server, &channel, &format!("create-{r}")).await);
        }
        let pid = server.pid();
        let spread =
            writes::create_users(server.addr, pid, &realms, 16, settings.seconds, "spread").await;
        let one =
            writes::create_users(server.addr, pid, &realms[..1], 16, settings.seconds, "one").await;
        for (run, calls) in [("16 realms", &spread), ("one realm", &one)] {
            if let Some(cpu) = calls.cpu_us {
                println!("CreateUser {run} ({name}): {cpu}");
            }
        }
        let ratio = spread.per_second / one.per_second;
        let (reference, target, met) = match backend {
            Backend::Postgres => {
                let pgbench = reference::pgbench_inserts(&db.url, 16, settings.seconds).await;
                (
                    format!(
                        "one realm {}; pgbench one-row inserts {pgbench:.0}/s ({:.2}×)",
                        calls(&one),
                        spread.per_second / pgbench
                    ),
                    "≥ 0.3× pgbench; ≥ 4× one realm",
                    spread.per_second >= 0.3 * pgbench && ratio >= 4.0,
                )
            }
            Backend::Sqlite => (
                format!("one realm {}", calls(&one)),
                "p99 ≤ 20 ms (one writer: no realm gain expected)",
                spread.p99_ms <= 20.0,
            ),
        };
        report.add(Row {
            what: "CreateUser, 16 connections over 16 realms".into(),
            backend: name,
            measured: match spread.cpu_us {
                Some(cpu) => format!("{}; {cpu}", calls(&spread)),
                None => calls(&spread),
            },
            reference,
            ratio: x(ratio),
            target,
            verdict: Verdict::of(met && spread.failed == 0 && one.failed == 0),
        });
    }

    if settings.runs("import") {
        // W3: 1,000 users per call into one realm, by a worker that waits
        // for each call, then by one that keeps two calls open (the README's
        // advice): the second call's decoding, checks and answer overlap
        // the first's turn under the realm lock.
        let target_realm = seed::create_realm(&server, &channel, "import").await;
        for in_flight in [1, 2] {
            let (per_call, users) = writes::import_users(
                server.addr,
                &target_realm,
                1000,
                in_flight,
                settings.seconds,
                &in_flight.to_string(),
            )
            .await;
            let (target, verdict) = match (backend, in_flight) {
                (Backend::Postgres, 2) => (
                    "≥ 10,000 users/s",
                    Verdict::of(users >= 10_000.0 && per_call.failed == 0),
                ),
                _ => ("(context)", Verdict::Info),
            };
            report.add(Row {
                what: format!(
                    "ImportUsers, 1,000 users per call, one realm, {in_flight} call{} in flight",
                    if in_flight == 1 { "" } else { "s" }
                ),
                backend: name,
                measured: format!(
                    "{users:.0} users/s; per call p50 {:.0} ms, p99 {:.0} ms{}",
                    per_call.p50_ms,
                    per_call.p99_ms,
                    if per_call.failed > 0 {
                        format!(", {} failed", per_call.failed)
                    } else {
                        String::new()
                    }
                ),
                reference: "—".into(),
                ratio: "—".into(),
                target,
                verdict,
            });
        }
    }

    if settings.runs("allow") {
        let portals = seed::sub_portals(&channel, &realm, "allow", 500).await;
        let mut support = SupportAccessServiceClient::new(channel.clone());
        for n in [1usize, 100, 500] {
            let mut times = Vec::new();
            for round in 0..5 {
                let agent = seed::agent(&server, &format!("Agent {n}-{round}"));
                let request_id = seed::request_access(&channel, &agent, &realm).await;
                let started = Instant::now();
                let results = support
                    .allow_access(with_token(
                        seed::allow_request(&request_id, &portals[..n]),
                        &realm.admin_token,
                    ))
                    .await
                    .expect("allow access")
                    .into_inner()
                    .results;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(results.len(), n);
                support
                    .revoke_access(with_token(
                        pb::RevokeAccessRequest {
                            realm_id: realm.realm_id.clone(),
                            portal_ids: portals[..n].to_vec(),
                        },
                        &realm.admin_token,
                    ))
                    .await
                    .expect("revoke access");
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let (target, verdict) = if n == 500 && backend == Backend::Postgres {
                ("≤ 250 ms", Verdict::of(median <= 250.0))
            } else {
                ("(context)", Verdict::Info)
            };
            report.add(Row {
                what: format!("AllowAccess of {n} portals (median of 5)"),
                backend: name,
                measured: format!("{median:.1} ms (max {:.1})", times[times.len() - 1]),
                reference: "—".into(),
                ratio: "—".into(),
                target,
                verdict,
            });
        }
    }

    if settings.runs("stream") {
        let writer = stream::Writer {
            channel: channel.clone(),
            token: checker.clone(),
            request: action.clone(),
        };
        let mut second = None;
        if backend == Backend::Postgres {
            second = Some(Server::start(&db.url, &[]).await);
        }
        for subscribers in [100usize, 1000] {
            // The reference first, at the same load: a bare tonic broadcast
            // server, started afresh for each subscriber count as the real
            // server's streams are opened afresh.
            let bare = broadcast::BareBroadcast::start();
            let bare_writer = stream::Writer {
                channel: tonic::transport::Channel::from_shared(format!("http://{}", bare.addr))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap(),
                token: checker.clone(),
                request: action.clone(),
            };
            let bare_fan = stream::fan_out(
                bare.addr,
                &realm.realm_id,
                &checker,
                String::new(),
                subscribers,
                &bare_writer,
                1000,
                settings.seconds,
                // In the bench's own process: its memory is not told apart
                // from the subscribers'.
                || 0,
            )
            .await;
            drop(bare_writer);
            bare.stop();
            report.add(Row {
                what: format!("bare tonic broadcast, {subscribers} subscribers"),
                backend: name,
                measured: format!(
                    "commit→receive p50 {:.1} ms, p99 {:.1} ms; {:.1}% delivered; writer {:.0} ev/s",
                    bare_fan.p50_ms,
                    bare_fan.p99_ms,
                    bare_fan.delivered_fraction * 100.0,
                    bare_fan.write_rate
                ),
                reference: "—".into(),
                ratio: "—".into(),
                target: "(reference: no database, no auth, same load)",
                verdict: Verdict::Info,
            });

            let mut places = vec![("same replica", server.addr, server.pid())];
            if let Some(other) = &second {
                places.push(("across replicas", other.addr, other.pid()));
            }
            for (place, addr, pid) in places {
                let cursor =
                    latest_cursor(&channel, &checker, &realm.realm_id, &first.cursor).await;
                let fan = stream::fan_out(
                    addr,
                    &realm.realm_id,
                    &checker,
                    cursor,
                    subscribers,
                    &writer,
                    1000,
                    settings.seconds,
                    || rss_of(pid),
                )
                .await;
                let same = place == "same replica";
                // SPEC §8: twice the bare server's p99; across replicas 50 ms more.
                let limit = 2.0 * bare_fan.p99_ms + if same { 0.0 } else { 50.0 };
                report.add(Row {
                    what: format!("audit stream, {subscribers} subscribers, {place}"),
                    backend: name,
                    measured: format!(
                        "commit→receive p50 {:.1} ms, p99 {:.1} ms; {:.1}% delivered; writer {:.0} ev/s; {:.1} KiB/idle subscriber",
                        fan.p50_ms,
                        fan.p99_ms,
                        fan.delivered_fraction * 100.0,
                        fan.write_rate,
                        fan.idle_kib_per_subscriber
                    ),
                    reference: format!("bare tonic broadcast p99 {:.1} ms", bare_fan.p99_ms),
                    ratio: x(fan.p99_ms / bare_fan.p99_ms),
                    target: if same {
                        "1,000 ev/s: p99 ≤ 2× bare tonic broadcast; ≤ 20 KiB/idle subscriber"
                    } else {
                        "1,000 ev/s: p99 ≤ 2× bare tonic broadcast + 50 ms across replicas"
                    },
                    verdict: Verdict::of(
                        fan.p99_ms <= limit
                            && fan.delivered_fraction >= 0.999
                            && fan.write_rate >= 950.0
                            // Below a thousand streams the RSS step is
                            // allocator noise; the memory target is judged
                            // on the thousand.
                            && (subscribers < 1000 || fan.idle_kib_per_subscriber <= 20.0),
                    ),
                });
            }
        }
        if let Some(other) = second {
            other.stop().await;
        }
    }

    if settings.runs("evidence") {
        bench_evidence(
            backend, settings, report, &db, &server, &channel, &realm, &checker, &action,
        )
        .await;
    }

    if settings.runs("scale") {
        let big = seed::create_realm(&server, &channel, "scale").await;
        let started = Instant::now();
        seed::scale(backend, &db.url, &big, settings.portals, settings.accounts).await;
        println!(
            "seeded {} portals and {} accounts in {:.1} s",
            settings.portals,
            settings.accounts,
            started.elapsed().as_secs_f64()
        );
        let portals = page_latencies(settings.portals as usize / 100, |token| {
            let mut client = PortalServiceClient::new(channel.clone());
            let request = with_token(
                pb::ListPortalsRequest {
                    realm_id: big.realm_id.clone(),
                    page_size: 100,
                    page_token: token,
                },
                &big.admin_token,
            );
            async move {
                client
                    .list_portals(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .next_page_token
            }
        })
        .await;
        report.add(Row {
            what: format!(
                "ListPortals pages of 100, realm of {} portals",
                settings.portals
            ),
            backend: name,
            measured: format!(
                "p50 {:.2} ms, p99 {:.2} ms over {} pages",
                portals.0, portals.1, portals.2
            ),
            reference: "—".into(),
            ratio: "—".into(),
            target: "p99 ≤ 10 ms",
            verdict: Verdict::of(portals.1 <= 10.0),
        });
        let users = page_latencies(200, |token| {
            let mut client = AdminServiceClient::new(channel.clone());
            let request = with_token(
                pb::ListUsersRequest {
                    portal_id: big.top_portal_id.clone(),
                    page_size: 100,
                    page_token: token,
                },
                &big.admin_token,
            );
            async move {
                client
                    .list_users(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .next_page_token
            }
        })
        .await;
        report.add(Row {
            what: format!(
                "ListUsers pages of 100, realm of {} accounts",
                settings.accounts
            ),
            backend: name,
            measured: format!(
                "p50 {:.2} ms, p99 {:.2} ms over {} pages",
                users.0, users.1, users.2
            ),
            reference: "—".into(),
            ratio: "—".into(),
            target: "p99 ≤ 10 ms",
            verdict: Verdict::of(users.1 <= 10.0),
        });
        // Check cost: a member of the big realm vs the hot realm's learner.
        let big_learner =
            seed::learner(&channel, &big, &big.top_portal_id, "probe@scale.example").await;
        let small = h2load::run(
            &Call {
                addr: server.addr,
                path: "/portal_access.v1.AdminService/CheckPermission",
                token: Some(&checker),
                body: frame(&check),
            },
            16,
            settings.seconds,
        );
        let large = h2load::run(
            &Call {
                addr: server.addr,
                path: "/portal_access.v1.AdminService/CheckPermission",
                token: Some(&checker),
                body: frame(&pb::CheckPermissionRequest {
                    portal_id: big.top_portal_id.clone(),
                    permission: pb::Permission::ViewPortal as i32,
                    user_id: big_learner,
                }),
            },
            16,
            settings.seconds,
        );
        let ratio = large.rps / small.rps;
        report.add(Row {
            what: "CheckPermission in the big realm, 16 connections".into(),
            backend: name,
            measured: rps(&large),
            reference: format!("same call in a 3-account realm {}", rps(&small)),
            ratio: x(ratio),
            target: "independent of realm size",
            verdict: Verdict::of(ratio >= 0.8),
        });
    }

    let (_, peak) = server.rss_kib();
    report.add(Row {
        what: "peak RSS over the whole run".into(),
        backend: name,
        measured: format!("{:.1} MB", peak as f64 / 1024.0),
        reference: format!("idle {:.1} MB", idle_rss as f64 / 1024.0),
        ratio: "—".into(),
        target: "(context)",
        verdict: Verdict::Info,
    });
    server.stop().await;
    db.remove().await;
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The cursor of the realm's newest event (streams start after it).
async fn latest_cursor(
    channel: &tonic::transport::Channel,
    token: &str,
    realm_id: &str,
    from: &str,
) -> String {
    let mut stream = SupportAccessServiceClient::new(channel.clone())
        .stream_audit_events(with_token(
            pb::StreamAuditEventsRequest {
                realm_id: realm_id.into(),
                portal_ids: vec![],
                categories: vec![],
                start: Some(pb::stream_audit_events_request::Start::AfterCursor(
                    from.into(),
                )),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    // Replay until the progress message says the stream has caught up (L9).
    while let Ok(Some(message)) = stream.message().await {
        if let Some(progress) = message.progress {
            return progress.cursor;
        }
    }
    panic!("the stream ended before catching up")
}

/// Pages through a list (at most `pages` pages), timing each call:
/// (p50 ms, p99 ms, pages read).
async fn page_latencies<F, Fut>(pages: usize, mut call: F) -> (f64, f64, usize)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut token = String::new();
    let mut times = Vec::new();
    for _ in 0..pages.max(1) {
        let started = Instant::now();
        token = call(token).await;
        times.push(started.elapsed().as_micros() as u64);
        if token.is_empty() {
            break;
        }
    }
    times.sort_unstable();
    (
        h2load::percentile_us(&times, 0.5) / 1000.0,
        h2load::percentile_us(&times, 0.99) / 1000.0,
        times.len(),
    )
}

/// SPEC §8 evidence rows: the tree's cost on audited writes (A/B, same
/// run), proof latency in a realm of a million events, and the export of a
/// ten-thousand-event session.
#[allow(clippy::too_many_arguments)]
async fn bench_evidence(
    backend: Backend,
    settings: &Settings,
    report: &mut Report,
    db: &BenchDb,
    server: &Server,
    channel: &tonic::transport::Channel,
    realm: &seed::Realm,
    token: &str,
    action: &pb::RecordSupportActionRequest,
) {
    let name = backend.name();
    // B: the same binary writing events as a release without the tree.
    let without = Server::start(&db.url, &[("PORTAL_ACCESS_EVIDENCE_TREE", "false")]).await;
    let call = |addr| Call {
        addr,
        path: "/portal_access.v1.SupportAccessService/RecordSupportAction",
        token: Some(token),
        body: frame(action),
    };
    // Alternated, best of two each, so neither variant gains from running
    // second on a warmer machine. The events written without the tree join
    // it at the next append with it, which must not fall inside a measured
    // run: one write after each run without the tree does it.
    let catch_up = || async {
        SupportAccessServiceClient::new(channel.clone())
            .record_support_action(with_token(action.clone(), token))
            .await
            .expect("catch-up write");
    };
    let mut with_tree: Option<h2load::Load> = None;
    let mut no_tree: Option<h2load::Load> = None;
    for _ in 0..2 {
        let a = h2load::run(&call(server.addr), 16, settings.seconds);
        let b = h2load::run(&call(without.addr), 16, settings.seconds);
        catch_up().await;
        if with_tree.as_ref().is_none_or(|w| a.rps > w.rps) {
            with_tree = Some(a);
        }
        if no_tree.as_ref().is_none_or(|w| b.rps > w.rps) {
            no_tree = Some(b);
        }
    }
    without.stop().await;
    let (with_tree, no_tree) = (with_tree.unwrap(), no_tree.unwrap());
    let cost = no_tree.rps / with_tree.rps;
    report.add(Row {
        what: "RecordSupportAction with the evidence tree vs without, 16 connections (best of 2, alternated)".into(),
        backend: name,
        measured: rps(&with_tree),
        reference: format!("without the tree {}", rps(&no_tree)),
        ratio: format!("cost {cost:.2}×"),
        target: "cost ≤ 1.15×",
        verdict: Verdict::of(cost <= 1.15 && with_tree.failed == 0),
    });

    let agent = seed::agent(server, "Evidence Agent");
    let session: Uuid = seed::request_access(channel, &agent, realm)
        .await
        .parse()
        .unwrap();
    let seconds =
        evidence::seed_log(backend, &db.url, realm, settings.events, session, 10_000).await;
    println!("seeded {} events in {seconds:.0} s", settings.events);
    let (i50, i99, c50, c99, size) = evidence::proof_latency(channel, token, realm, 1000).await;
    for (what, p50, p99) in [("inclusion", i50, i99), ("consistency", c50, c99)] {
        report.add(Row {
            what: format!("{what} proof, realm of {size} events (1,000 calls)"),
            backend: name,
            measured: format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
            reference: "—".into(),
            ratio: "—".into(),
            target: "p99 ≤ 5 ms",
            verdict: Verdict::of(p99 <= 5.0),
        });
    }
    let (median, events, bytes) = evidence::export_time(channel, token, session, 3).await;
    report.add(Row {
        what: format!("ExportAccessEvidence of a {events}-event session (median of 3)"),
        backend: name,
        measured: format!("{median:.0} ms, {:.1} MB", bytes as f64 / 1e6),
        reference: "—".into(),
        ratio: "—".into(),
        target: "≤ 1 s",
        verdict: Verdict::of(median <= 1000.0),
    });
}

/// CheckPermission of this build beside another build's (the baseline) on
/// the same database in the same run, alternated, best of three each: did
/// a change slow the hot path down?
#[allow(clippy::too_many_arguments)]
async fn bench_check_against_baseline(
    baseline: &str,
    db: &BenchDb,
    server: &Server,
    token: &str,
    check: &pb::CheckPermissionRequest,
    settings: &Settings,
    report: &mut Report,
    name: &'static str,
) {
    let other = Server::start_binary(std::path::Path::new(baseline), &db.url, &[]).await;
    let call = |addr| Call {
        addr,
        path: "/portal_access.v1.AdminService/CheckPermission",
        token: Some(token),
        body: frame(check),
    };
    let mut best = (0.0f64, 0.0f64);
    let mut loads = (None, None);
    for _ in 0..3 {
        let ours = h2load::run(&call(server.addr), 16, settings.seconds);
        let theirs = h2load::run(&call(other.addr), 16, settings.seconds);
        if ours.rps > best.0 {
            best.0 = ours.rps;
            loads.0 = Some(ours);
        }
        if theirs.rps > best.1 {
            best.1 = theirs.rps;
            loads.1 = Some(theirs);
        }
    }
    other.stop().await;
    let (ours, theirs) = (loads.0.unwrap(), loads.1.unwrap());
    let label = std::path::Path::new(baseline)
        .components()
        .rev()
        .find_map(|c| {
            let c = c.as_os_str().to_string_lossy();
            c.starts_with('v').then(|| c.into_owned())
        })
        .unwrap_or_else(|| "baseline".into());
    let ratio = ours.rps / theirs.rps;
    report.add(Row {
        what: format!(
            "CheckPermission, 16 connections, this build vs {label} (best of 3, alternated)"
        ),
        backend: name,
        measured: rps(&ours),
        reference: format!("{label} {}", rps(&theirs)),
        ratio: x(ratio),
        target: "not slower (≥ 0.95×, within noise)",
        verdict: Verdict::of(ratio >= 0.95 && ours.failed == 0),
    });
}

//! Issue #6: PostgreSQL becomes unreachable under load, then comes back.
//! The server reaches the database through a TCP proxy the test controls;
//! cutting it drops every connection and refuses new ones.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portal_access::proto::v1 as pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::faults::ids;
use crate::helpers::*;
use crate::people::*;

struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, up_rx) = watch::channel(true);
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*up_rx.borrow() {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tracked.lock().unwrap().push(task);
            }
        });
        Proxy {
            port,
            up,
            connections,
        }
    }

    /// Drops every open connection and refuses new ones.
    fn cut(&self) {
        self.up.send_replace(false);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// `postgres://u@127.0.0.1:5432/db` → the same through `port`, and the
/// `host:port` it pointed at.
fn through_proxy(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, rest) = rest.split_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (hostport, path) = rest.split_once('/').unwrap();
    let at = if userinfo.is_empty() { "" } else { "@" };
    (
        format!("{scheme}://{userinfo}{at}127.0.0.1:{port}/{path}"),
        hostport.to_owned(),
    )
}

async fn wait_for(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    wanted: ServingStatus,
) {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .unwrap_or_else(|_| panic!("health turns {wanted:?} within 30 s"))
            .expect("watch open")
            .expect("no error");
        if next.status() == wanted {
            return;
        }
    }
}

const DEADLINE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<String>,
    codes: BTreeSet<String>,
    longest: Duration,
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_flips_health_and_loses_no_acknowledged_write_postgres() {
    let Some((db, url)) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let (_, target) = through_proxy(&url, 0);
    let proxy = Proxy::start(target).await;
    let (proxied, _) = through_proxy(&url, proxy.port);
    let mut config = test_config(&proxied);
    config.db_check_interval = Duration::from_millis(100);
    let mut app = start_server(config, Backend::Postgres).await;
    let world = world(&app).await;
    let mut health = HealthClient::new(app.channel.clone())
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    wait_for(&mut health, ServingStatus::Serving).await;

    let (stop, stopped) = watch::channel(false);
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let mut writers = Vec::new();
    for writer in 0..3 {
        let mut admins = app.admins();
        let token = world.realm.admin_token.clone();
        let portal_id = world.sub_a.clone();
        let outcomes = outcomes.clone();
        let stopped = stopped.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            loop {
                if *stopped.borrow() {
                    break;
                }
                n += 1;
                let mut request = with_token(
                    learner_request(&portal_id, &format!("w{writer}-{n}@acme.example"), "Writer"),
                    &token,
                );
                request.set_timeout(DEADLINE);
                let started = Instant::now();
                let answer = admins.create_user(request).await;
                let took = started.elapsed();
                {
                    let mut outcomes = outcomes.lock().unwrap();
                    outcomes.longest = outcomes.longest.max(took);
                    match answer {
                        Ok(created) => outcomes
                            .acknowledged
                            .push(created.into_inner().user.unwrap().user_id),
                        Err(status) => {
                            outcomes.codes.insert(format!("{:?}", status.code()));
                        }
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }

    // Some writes go through before the outage.
    while outcomes.lock().unwrap().acknowledged.len() < 20 {
        tokio::task::yield_now().await;
    }
    proxy.cut();
    wait_for(&mut health, ServingStatus::NotServing).await;
    // While it is down, a call fails at once with UNAVAILABLE.
    let started = Instant::now();
    let refused = create_user(
        &app,
        &world.realm.admin_token,
        &world.sub_a,
        "during@acme.example",
        pb::UserType::Learner,
        None,
    )
    .await
    .expect_err("the database is down");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(reason(&refused), "DATABASE_UNAVAILABLE");
    assert!(
        started.elapsed() < DEADLINE,
        "fails fast: {:?}",
        started.elapsed()
    );
    let before_restore = outcomes.lock().unwrap().acknowledged.len();

    proxy.restore();
    wait_for(&mut health, ServingStatus::Serving).await;
    // The pool reconnects: writes are acknowledged again.
    while outcomes.lock().unwrap().acknowledged.len() < before_restore + 20 {
        tokio::task::yield_now().await;
    }
    stop.send_replace(true);
    for writer in writers {
        writer.await.unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert!(
        outcomes.codes.contains("Unavailable"),
        "writers saw the outage: {:?}",
        outcomes.codes
    );
    for code in &outcomes.codes {
        assert!(
            ["Unavailable", "Cancelled", "DeadlineExceeded"].contains(&code.as_str()),
            "only outage codes: {:?}",
            outcomes.codes
        );
    }
    assert!(
        outcomes.longest < DEADLINE + Duration::from_millis(500),
        "no call outlived its deadline: {:?}",
        outcomes.longest
    );
    let stored: BTreeSet<String> = ids(&url, "accounts").await.into_iter().collect();
    for id in &outcomes.acknowledged {
        assert!(stored.contains(id), "acknowledged user {id} is stored");
    }
    app.shut_down().await;
    db.remove().await;
}

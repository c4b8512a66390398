//! Property test of the admin model: random sequences of operations by
//! random actors over small realms, through gRPC, checked after every step
//! against the invariants of SPEC A2-A18 and A20 and against a reference model
//! written here from the rules' text, independently of `src/domain`.
//!
//! The model lists every rule an operation would break. The service must
//! refuse exactly when that list is non-empty, with one of those reasons,
//! and must then leave the realm as it was; otherwise the realm must end
//! exactly as the model says.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use portal_access::proto::v1 as pb;

const TOP: usize = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Learner,
    Instructor,
    Manager,
    Admin,
}

impl Kind {
    fn proto(self) -> pb::UserType {
        match self {
            Kind::Learner => pb::UserType::Learner,
            Kind::Instructor => pb::UserType::Instructor,
            Kind::Manager => pb::UserType::Manager,
            Kind::Admin => pb::UserType::Admin,
        }
    }

    fn stored(s: &str) -> Kind {
        match s {
            "learner" => Kind::Learner,
            "instructor" => Kind::Instructor,
            "manager" => Kind::Manager,
            _ => Kind::Admin,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        actor: u8,
        bulk: bool,
        portal: u8,
        kind: Kind,
        settings: Option<bool>,
        invite: bool,
    },
    SetType {
        actor: u8,
        bulk: bool,
        target: u8,
        portal: u8,
        kind: Kind,
        settings: Option<bool>,
    },
    Settings {
        actor: u8,
        bulk: bool,
        target: u8,
        on: bool,
    },
    Remove {
        actor: u8,
        bulk: bool,
        target: u8,
        portal: u8,
    },
    Delete {
        actor: u8,
        bulk: bool,
        target: u8,
    },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Learner),
        Just(Kind::Instructor),
        Just(Kind::Manager),
        Just(Kind::Admin),
        Just(Kind::Admin)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let bulk = prop::bool::weighted(0.2);
    prop_oneof![
        3 => (any::<u8>(), bulk, 0u8..3, kind(), prop::option::of(any::<bool>()), prop::bool::weighted(0.2))
            .prop_map(|(actor, bulk, portal, kind, settings, invite)| Op::Create { actor, bulk, portal, kind, settings, invite }),
        3 => (any::<u8>(), bulk, any::<u8>(), 0u8..3, kind(), prop::option::of(any::<bool>()))
            .prop_map(|(actor, bulk, target, portal, kind, settings)| Op::SetType { actor, bulk, target, portal, kind, settings }),
        2 => (any::<u8>(), bulk, any::<u8>(), any::<bool>())
            .prop_map(|(actor, bulk, target, on)| Op::Settings { actor, bulk, target, on }),
        1 => (any::<u8>(), bulk, any::<u8>(), 0u8..3)
            .prop_map(|(actor, bulk, target, portal)| Op::Remove { actor, bulk, target, portal }),
        1 => (any::<u8>(), bulk, any::<u8>()).prop_map(|(actor, bulk, target)| Op::Delete { actor, bulk, target }),
    ]
}

/// One account as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Person {
    settings: bool,
    memberships: BTreeMap<usize, Kind>,
}

impl Person {
    fn top_admin(&self) -> bool {
        self.memberships.get(&TOP) == Some(&Kind::Admin)
    }
    fn full_top(&self) -> bool {
        self.top_admin() && self.settings
    }
    fn any_admin(&self) -> bool {
        self.memberships.values().any(|k| *k == Kind::Admin)
    }
    fn admin_in(&self, portal: usize) -> bool {
        self.top_admin() || self.memberships.get(&portal) == Some(&Kind::Admin)
    }
    fn administers(&self, other: &Person) -> bool {
        self.top_admin() || other.memberships.keys().any(|p| self.admin_in(*p))
    }
    /// A20: authority over the whole account, i.e. every portal where the
    /// other is an admin.
    fn administers_every_admin_portal_of(&self, other: &Person) -> bool {
        other
            .memberships
            .iter()
            .filter(|(_, k)| **k == Kind::Admin)
            .all(|(p, _)| self.admin_in(*p))
    }
}

/// The realm as the model sees it: account ids in creation order, `None`
/// once deleted.
#[derive(Debug, Clone, Default)]
struct Realm {
    ids: Vec<String>,
    people: BTreeMap<String, Person>,
}

impl Realm {
    fn full_top_admins(&self) -> usize {
        self.people.values().filter(|p| p.full_top()).count()
    }
}

/// What the model expects of one operation.
struct Expected {
    /// Every rule the operation breaks (empty: it must succeed).
    broken: Vec<&'static str>,
    /// The realm afterwards, if it succeeds.
    after: Realm,
}

/// The rules, restated from SPEC.md for the model.
fn predict(
    realm: &Realm,
    actor: &str,
    bulk: bool,
    op: &Op,
    new_id: &str,
    portals: usize,
) -> Expected {
    let mut broken = Vec::new();
    let mut after = realm.clone();
    let Some(me) = realm.people.get(actor) else {
        return Expected {
            broken: vec!["UNKNOWN_ACCOUNT"],
            after,
        };
    };
    let interactive = !bulk;
    let target_of = |index: u8| realm.ids[index as usize % realm.ids.len()].clone();
    // SPEC §5: only a caller who sees the whole realm learns that an
    // account does not exist.
    let missing = if me.top_admin() {
        "USER_NOT_FOUND"
    } else {
        "ADMIN_REQUIRED"
    };
    let common = |target: &Person, same: bool, broken: &mut Vec<&'static str>| {
        if target.top_admin() && !me.top_admin() {
            broken.push("TOP_LEVEL_ADMIN_PROTECTED"); // A15
        }
        if !same && target.any_admin() && target.settings && !me.settings {
            broken.push("PRIVILEGE_ESCALATION"); // a limited admin over a full one
        }
        if !me.administers(target) {
            broken.push("ADMIN_REQUIRED");
        }
    };
    match op {
        Op::Create {
            portal,
            kind,
            settings,
            invite,
            ..
        } => {
            let portal = *portal as usize % portals;
            if !me.admin_in(portal) {
                broken.push("ADMIN_REQUIRED");
            }
            let granted = if *kind == Kind::Admin {
                match settings {
                    Some(true) => {
                        if !interactive {
                            broken.push("MANUAL_CHANNEL_REQUIRED"); // A11
                        }
                        if !me.settings {
                            broken.push("PRIVILEGE_ESCALATION"); // A13
                        }
                        true
                    }
                    Some(false) => false,
                    None => interactive && !invite && me.settings, // A10, A13
                }
            } else {
                if *settings == Some(true) {
                    broken.push("NOT_AN_ADMIN");
                }
                false
            };
            after.ids.push(new_id.to_owned());
            after.people.insert(
                new_id.to_owned(),
                Person {
                    settings: granted,
                    memberships: BTreeMap::from([(portal, *kind)]),
                },
            );
        }
        Op::SetType {
            target,
            portal,
            kind,
            settings,
            ..
        } => {
            let id = target_of(*target);
            let Some(them) = realm.people.get(&id) else {
                return Expected {
                    broken: vec![missing],
                    after,
                };
            };
            let portal = *portal as usize % portals;
            let same = id == actor;
            common(them, same, &mut broken);
            if !me.admin_in(portal) {
                broken.push("ADMIN_REQUIRED");
            }
            if them.top_admin() && portal != TOP {
                broken.push(if *kind == Kind::Admin {
                    "TOP_LEVEL_ADMIN_ALREADY_HAS_ACCESS" // A2
                } else {
                    "TOP_LEVEL_ADMIN_TYPE_FIXED" // A3
                });
            }
            if same && them.memberships.get(&portal).is_none_or(|c| kind > c) {
                broken.push("PRIVILEGE_ESCALATION"); // A14
            }
            let mut next = them.clone();
            next.memberships.insert(portal, *kind);
            if *kind == Kind::Admin {
                let asked = settings.or(them.any_admin().then_some(them.settings));
                next.settings = match asked {
                    Some(true) if !them.settings => {
                        if !interactive {
                            broken.push("MANUAL_CHANNEL_REQUIRED");
                        }
                        if same || !me.settings {
                            broken.push("PRIVILEGE_ESCALATION");
                        }
                        true
                    }
                    Some(wanted) => wanted,
                    None => interactive && me.settings,
                };
                if next.settings != them.settings && !me.administers_every_admin_portal_of(them) {
                    broken.push("PRIVILEGE_ESCALATION"); // A20
                }
                if portal == TOP {
                    next.memberships.retain(|p, _| *p == TOP); // A18
                }
            } else {
                if *settings == Some(true) {
                    broken.push("NOT_AN_ADMIN");
                }
                next.settings = them.settings && next.any_admin();
            }
            if them.full_top() && !next.full_top() && realm.full_top_admins() <= 1 {
                broken.push("LAST_ADMIN"); // A16
            }
            after.people.insert(id, next);
        }
        Op::Settings { target, on, .. } => {
            let id = target_of(*target);
            let Some(them) = realm.people.get(&id) else {
                return Expected {
                    broken: vec![missing],
                    after,
                };
            };
            let same = id == actor;
            common(them, same, &mut broken);
            if !them.any_admin() {
                broken.push("NOT_AN_ADMIN");
            }
            if *on && !them.settings {
                if !interactive {
                    broken.push("MANUAL_CHANNEL_REQUIRED");
                }
                if same || !me.settings {
                    broken.push("PRIVILEGE_ESCALATION");
                }
            }
            if *on != them.settings && !me.administers_every_admin_portal_of(them) {
                broken.push("PRIVILEGE_ESCALATION"); // A20
            }
            if them.full_top() && !on && realm.full_top_admins() <= 1 {
                broken.push("LAST_ADMIN");
            }
            after.people.get_mut(&id).unwrap().settings = *on;
        }
        Op::Remove { target, portal, .. } => {
            let id = target_of(*target);
            let Some(them) = realm.people.get(&id) else {
                return Expected {
                    broken: vec![missing],
                    after,
                };
            };
            let portal = *portal as usize % portals;
            common(them, id == actor, &mut broken);
            if !me.admin_in(portal) {
                broken.push("ADMIN_REQUIRED");
            }
            if !them.memberships.contains_key(&portal) {
                broken.push("NOT_A_MEMBER");
            }
            let mut next = them.clone();
            next.memberships.remove(&portal);
            next.settings = them.settings && next.any_admin();
            if them.full_top() && portal == TOP && realm.full_top_admins() <= 1 {
                broken.push("LAST_ADMIN");
            }
            after.people.insert(id, next);
        }
        Op::Delete { target, .. } => {
            let id = target_of(*target);
            let Some(them) = realm.people.get(&id) else {
                return Expected {
                    broken: vec![missing],
                    after,
                };
            };
            common(them, id == actor, &mut broken);
            if !me.top_admin() && !them.memberships.keys().all(|p| me.admin_in(*p)) {
                broken.push("ADMIN_REQUIRED");
            }
            if them.full_top() && realm.full_top_admins() <= 1 {
                broken.push("LAST_ADMIN");
            }
            after.people.remove(&id);
        }
    }
    Expected { broken, after }
}

/// The realm as the database holds it.
async fn observe(
    db: &DatabaseConnection,
    realm_id: &str,
    portal_ids: &[String],
) -> BTreeMap<String, Person> {
    let backend = db.get_database_backend();
    let realm: uuid::Uuid = realm_id.parse().unwrap();
    let literal = match backend {
        sea_orm::DbBackend::Postgres => format!("'{realm}'"),
        _ => format!("X'{}'", realm.simple()),
    };
    let mut people = BTreeMap::new();
    for row in db
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT id, can_access_portal_settings FROM accounts WHERE realm_id = {literal}"
            ),
        ))
        .await
        .unwrap()
    {
        let id: uuid::Uuid = row.try_get_by_index(0).unwrap();
        let settings: bool = row.try_get_by_index(1).unwrap();
        people.insert(
            id.to_string(),
            Person {
                settings,
                memberships: BTreeMap::new(),
            },
        );
    }
    for row in db
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT account_id, portal_id, user_type FROM memberships WHERE realm_id = {literal}"),
        ))
        .await
        .unwrap()
    {
        let account: uuid::Uuid = row.try_get_by_index(0).unwrap();
        let portal: uuid::Uuid = row.try_get_by_index(1).unwrap();
        let kind: String = row.try_get_by_index(2).unwrap();
        let index = portal_ids.iter().position(|p| *p == portal.to_string()).unwrap();
        people.get_mut(&account.to_string()).unwrap().memberships.insert(index, Kind::stored(&kind));
    }
    people
}

fn rank(person: &Person, portal: usize) -> (bool, Option<Kind>) {
    (
        person.settings,
        person
            .memberships
            .get(&portal)
            .copied()
            .or(person.top_admin().then_some(Kind::Admin)),
    )
}

static CASE: AtomicUsize = AtomicUsize::new(0);

async fn run_case(
    app: &TestApp,
    db: &DatabaseConnection,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let w = world_named(
        app,
        &format!("prop{}", CASE.fetch_add(1, Ordering::Relaxed)),
    )
    .await;
    let portals = vec![
        w.realm.top_portal_id.clone(),
        w.sub_a.clone(),
        w.sub_b.clone(),
    ];
    let mut realm = Realm::default();
    realm.ids.push(w.realm.admin_id.clone());
    realm.people.insert(
        w.realm.admin_id.clone(),
        Person {
            settings: true,
            memberships: BTreeMap::from([(TOP, Kind::Admin)]),
        },
    );
    for (step, op) in ops.iter().enumerate() {
        let (actor_index, bulk) = match op {
            Op::Create { actor, bulk, .. }
            | Op::SetType { actor, bulk, .. }
            | Op::Settings { actor, bulk, .. }
            | Op::Remove { actor, bulk, .. }
            | Op::Delete { actor, bulk, .. } => (*actor, *bulk),
        };
        let actor = realm.ids[actor_index as usize % realm.ids.len()].clone();
        let token = app.account_on(
            &w.realm.realm_id,
            &actor,
            if bulk { "bulk_import" } else { "interactive" },
        );
        let before = realm.people.clone();
        let email = format!("u{step}@prop.example");
        let outcome: Result<Option<String>, tonic::Status> = match op {
            Op::Create {
                portal,
                kind,
                settings,
                invite,
                ..
            } => create_user_with(
                app,
                &token,
                &portals[*portal as usize % 3],
                &email,
                kind.proto(),
                *settings,
                *invite,
            )
            .await
            .map(|u| Some(u.user_id)),
            Op::SetType {
                target,
                portal,
                kind,
                settings,
                ..
            } => {
                let target = &realm.ids[*target as usize % realm.ids.len()];
                set_type(
                    app,
                    &token,
                    target,
                    &portals[*portal as usize % 3],
                    kind.proto(),
                    *settings,
                )
                .await
                .map(|_| None)
            }
            Op::Settings { target, on, .. } => set_settings(
                app,
                &token,
                &realm.ids[*target as usize % realm.ids.len()],
                *on,
            )
            .await
            .map(|_| None),
            Op::Remove { target, portal, .. } => remove_from(
                app,
                &token,
                &realm.ids[*target as usize % realm.ids.len()],
                &portals[*portal as usize % 3],
            )
            .await
            .map(|_| None),
            Op::Delete { target, .. } => {
                delete(app, &token, &realm.ids[*target as usize % realm.ids.len()])
                    .await
                    .map(|_| None)
            }
        };
        let new_id = outcome
            .as_ref()
            .ok()
            .cloned()
            .flatten()
            .unwrap_or_else(|| "new".into());
        let expected = predict(&realm, &actor, bulk, op, &new_id, portals.len());
        match &outcome {
            Ok(_) => prop_assert!(
                expected.broken.is_empty(),
                "step {step} {op:?} succeeded but breaks {:?}",
                expected.broken
            ),
            Err(status) => {
                let reason = reason(status);
                prop_assert!(
                    expected.broken.contains(&reason.as_str()),
                    "step {step} {op:?} refused with {reason}, model expected {:?}",
                    expected.broken
                );
            }
        }
        if outcome.is_ok() {
            realm = expected.after;
        }
        let observed = observe(db, &w.realm.realm_id, &portals).await;
        prop_assert_eq!(
            &observed,
            &realm.people,
            "step {} {:?}: the realm differs from the model",
            step,
            op
        );

        // Invariants, whatever the model says.
        prop_assert!(
            observed.values().any(Person::full_top),
            "A16: a full top-level admin remains"
        );
        for person in observed.values().filter(|p| p.top_admin()) {
            prop_assert_eq!(
                person.memberships.len(),
                1,
                "A2/A18: top-level admins hold no sub-portal memberships"
            );
        }
        if outcome.is_ok() {
            let me_before = &before[&actor];
            let target_id = match op {
                Op::Create { .. } => Some(new_id.clone()),
                Op::SetType { target, .. }
                | Op::Settings { target, .. }
                | Op::Remove { target, .. }
                | Op::Delete { target, .. } => {
                    Some(realm.ids[*target as usize % realm.ids.len()].clone())
                }
            };
            if let Some(target_id) = target_id {
                let was = before.get(&target_id);
                let now = observed.get(&target_id);
                if target_id == actor
                    && let (Some(was), Some(now)) = (was, now)
                {
                    for portal in 0..portals.len() {
                        let (s0, k0) = rank(was, portal);
                        let (s1, k1) = rank(now, portal);
                        prop_assert!(
                            (s0 || !s1) && k1 <= k0,
                            "A14: nobody's permissions grow by their own action"
                        );
                    }
                }
                if let Some(now) = now
                    && now.settings
                    && !was.is_some_and(|w| w.settings)
                {
                    prop_assert!(
                        me_before.settings,
                        "A13: nobody ends with more than the admin who granted it"
                    );
                }
                if let Some(was) = was {
                    prop_assert!(
                        !was.top_admin() || me_before.top_admin(),
                        "A15: a sub-portal admin changed a top-level admin"
                    );
                }
            }
        }
    }
    Ok(())
}

both_databases! {
    async fn admin_model_properties_hold_for_random_operation_sequences(app) {
        let cases = match app.backend { Backend::Postgres => 24, Backend::Sqlite => 32 };
        let db = app.database().await;
        let handle = tokio::runtime::Handle::current();
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        let result = tokio::task::block_in_place(|| {
            runner.run(&prop::collection::vec(op(), 1..30), |ops| handle.block_on(run_case(app, &db, ops)))
        });
        db.close().await.ok();
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
}

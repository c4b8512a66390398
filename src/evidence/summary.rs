//! What a verified bundle says, for a customer's security officer (E6):
//! who asked and why, who approved, the level, when access started and
//! ended, and what support did, portal by portal.
//!
//! Action names are spelled out here rather than imported, so the
//! verifier reads on its own; a test pins them to `domain::audit::action`.

use std::fmt::Write as _;

use chrono::SecondsFormat;
use uuid::Uuid;

use super::bundle::EvidenceBundle;
use crate::domain::checkpoint::Checkpoint;
use crate::domain::leaf::LeafEvent;

pub(super) const WITHDRAWN: &str = "support_access.withdrawn";
pub(super) const DECLINED: &str = "support_access.declined";
pub(super) const REQUEST_EXPIRED: &str = "support_access.request_expired";
pub(super) const ALLOWED: &str = "support_access.allowed";
pub(super) const EXTENDED: &str = "support_access.extended";
pub(super) const REVOKED: &str = "support_access.revoked";
pub(super) const EXPIRED: &str = "support_access.expired";
pub(super) const TEMPORARY_ADMIN_CREATED: &str = "support_access.temporary_admin_created";
pub(super) const TEMPORARY_ADMIN_DELETED: &str = "support_access.temporary_admin_deleted";
pub(super) const SUPPORT_ACTION: &str = "support_access.action";
pub(super) const SUPPORT_CALL: &str = "support_access.call";
/// G7: support ends its own access (not yet emitted by the server).
pub(super) const RELINQUISHED: &str = "support_access.relinquished";

/// Whether the bundle shows how the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The request was closed, or every portal it opened was closed, by
    /// an event inside the bundle.
    Inside { at: String, how: String },
    /// Not shown: at the checkpoint the session was still open, or later
    /// events are not in the bundle. Not a failure: nothing in the bundle
    /// is false, it just stops early.
    NotInBundle { open_portals: Vec<Uuid> },
}

/// The outcome of a bundle that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub realm_id: Uuid,
    pub access_request_id: Uuid,
    pub origin: String,
    pub checkpoint_size: u64,
    /// `name+id` of the verifier keys whose signatures checked.
    pub signed_by: Vec<String>,
    pub event_count: usize,
    pub session_end: SessionEnd,
    text: String,
}

impl Summary {
    /// The human report.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn time(leaf: &LeafEvent) -> String {
    leaf.occurred_at().map_or_else(
        || format!("{} µs after the epoch", leaf.occurred_at_micros),
        |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )
}

fn who(leaf: &LeafEvent) -> String {
    match (&leaf.actor_agent_name, leaf.actor_agent_id) {
        (Some(name), Some(id)) if leaf.actor_kind == "support_agent" => {
            format!("{name} (support agent {id})")
        }
        (Some(name), Some(id)) => {
            format!(
                "{name} (support agent {id}, as {} {})",
                leaf.actor_kind, leaf.actor_id
            )
        }
        _ if leaf.actor_kind == "system" => "portal-access itself".to_owned(),
        _ => format!("{} {}", leaf.actor_kind, leaf.actor_id),
    }
}

fn detail<'a>(leaf: &'a LeafEvent, key: &str) -> Option<&'a str> {
    leaf.details.get(key).map(String::as_str)
}

/// One portal's story, in leaf order.
struct Portal {
    id: Uuid,
    lines: Vec<String>,
    ever_open: bool,
    open: bool,
}

pub(super) fn summarise(
    bundle: &EvidenceBundle,
    checkpoint: &Checkpoint,
    signed_by: Vec<String>,
    leaves: &[LeafEvent],
) -> Summary {
    let request = &leaves[0];
    let mut decisions: Vec<String> = Vec::new();
    let mut portals: Vec<Portal> = Vec::new();
    let mut request_lines: Vec<String> = Vec::new();
    let mut closed: Option<(String, String)> = None;
    let mut last_end: Option<(String, String)> = None;
    let mut granted_level: Option<String> = None;

    for leaf in &leaves[1..] {
        let at = time(leaf);
        let portal = leaf.portal_id.map(|id| {
            let index = portals.iter().position(|p| p.id == id).unwrap_or_else(|| {
                portals.push(Portal {
                    id,
                    lines: Vec::new(),
                    ever_open: false,
                    open: false,
                });
                portals.len() - 1
            });
            &mut portals[index]
        });
        let action = leaf.action.as_str();
        let line = match action {
            ALLOWED | EXTENDED => {
                let until = detail(leaf, "expire_time").unwrap_or("(no expiry recorded)");
                if let Some(level) = detail(leaf, "level") {
                    granted_level = Some(level.to_owned());
                }
                let verb = if action == ALLOWED {
                    "access allowed"
                } else {
                    "access extended"
                };
                decisions.push(format!("{at}  {verb} by {}", who(leaf)));
                if let Some(p) = portal {
                    p.ever_open = true;
                    p.open = true;
                    p.lines
                        .push(format!("{at}  {verb} by {}, until {until}", who(leaf)));
                }
                None
            }
            REVOKED | EXPIRED | RELINQUISHED => {
                let how = match action {
                    REVOKED => format!("revoked by {}", who(leaf)),
                    EXPIRED => "expired".to_owned(),
                    _ => format!("ended by {}", who(leaf)),
                };
                last_end = Some((at.clone(), how.clone()));
                match portal {
                    Some(p) => {
                        p.open = false;
                        p.lines.push(format!("{at}  access ended: {how}"));
                    }
                    // An end without a portal ends them all (G7).
                    None => {
                        for p in &mut portals {
                            p.open = false;
                        }
                        request_lines.push(format!("{at}  all access ended: {how}"));
                    }
                }
                None
            }
            WITHDRAWN | DECLINED | REQUEST_EXPIRED => {
                let how = match action {
                    WITHDRAWN => format!("request withdrawn by {}", who(leaf)),
                    DECLINED => format!("request declined by {}", who(leaf)),
                    _ => "request expired unanswered".to_owned(),
                };
                decisions.push(format!("{at}  {how}"));
                closed = Some((at.clone(), how));
                None
            }
            TEMPORARY_ADMIN_CREATED => Some(format!(
                "{at}  temporary support admin {} created",
                leaf.target_id
            )),
            TEMPORARY_ADMIN_DELETED => Some(format!(
                "{at}  temporary support admin {} deleted",
                leaf.target_id
            )),
            SUPPORT_CALL => Some(format!(
                "{at}  {} called {} → {}",
                who(leaf),
                detail(leaf, "rpc").unwrap_or(&leaf.target_id),
                detail(leaf, "outcome").unwrap_or("?")
            )),
            SUPPORT_ACTION => Some(format!(
                "{at}  {} did \"{}\" (recorded by service {})",
                who(leaf),
                detail(leaf, "support_action").unwrap_or(&leaf.target_id),
                detail(leaf, "recorded_by").unwrap_or("?")
            )),
            other => {
                let target = format!("{} {}", leaf.target_type, leaf.target_id);
                if other.contains("approv") || other.contains("propos") {
                    decisions.push(format!("{at}  {other} by {}", who(leaf)));
                }
                Some(format!(
                    "{at}  {other} by {} on {}",
                    who(leaf),
                    target.trim()
                ))
            }
        };
        if let Some(line) = line {
            match portals.iter_mut().find(|p| Some(p.id) == leaf.portal_id) {
                Some(p) => p.lines.push(line),
                None => request_lines.push(line),
            }
        }
    }

    let session_end = match (closed, portals.iter().any(|p| p.ever_open)) {
        (Some((at, how)), _) => SessionEnd::Inside { at, how },
        (None, true) if portals.iter().all(|p| !p.open) => {
            let (at, how) = last_end.unwrap_or_default();
            SessionEnd::Inside {
                at,
                how: format!("every portal's access ended (last: {how})"),
            }
        }
        _ => SessionEnd::NotInBundle {
            open_portals: portals.iter().filter(|p| p.open).map(|p| p.id).collect(),
        },
    };

    let mut text = String::new();
    let _ = writeln!(
        text,
        "Evidence for access request {} in realm {}",
        bundle.access_request_id, bundle.realm_id
    );
    let _ = writeln!(
        text,
        "VERIFIED: checkpoint \"{}\" at tree size {}, signed by {}; {} event(s), each proven \
         in that tree; back-links unbroken from the request.",
        checkpoint.origin(),
        checkpoint.size(),
        signed_by.join(", "),
        leaves.len()
    );
    let _ = writeln!(text, "\nRequest (leaf {})", request.leaf_index);
    let _ = writeln!(text, "  asked by  {}", who(request));
    let _ = writeln!(text, "  at        {}", time(request));
    let _ = writeln!(
        text,
        "  reason    {}",
        detail(request, "reason").unwrap_or("(none recorded)")
    );
    let _ = writeln!(
        text,
        "  ticket    {}",
        detail(request, "ticket_reference")
            .filter(|t| !t.is_empty())
            .unwrap_or("(none)")
    );
    let requested_level = detail(request, "level");
    let _ = writeln!(
        text,
        "  level     {}",
        match (requested_level, &granted_level) {
            (_, Some(granted)) => format!(
                "{granted} (requested {})",
                requested_level.unwrap_or("ADMIN")
            ),
            (Some(level), None) => format!("{level} requested"),
            (None, None) => "ADMIN (no level recorded: the temporary admin of S4)".to_owned(),
        }
    );
    let _ = writeln!(text, "\nApprovals and decisions");
    if decisions.is_empty() {
        let _ = writeln!(text, "  (none in this bundle)");
    }
    for line in &decisions {
        let _ = writeln!(text, "  {line}");
    }
    for line in &request_lines {
        let _ = writeln!(text, "  {line}");
    }
    for portal in &portals {
        let _ = writeln!(text, "\nPortal {}", portal.id);
        for line in &portal.lines {
            let _ = writeln!(text, "  {line}");
        }
    }
    let _ = writeln!(text);
    match &session_end {
        SessionEnd::Inside { at, how } => {
            let _ = writeln!(text, "Session end: inside this bundle, {at}: {how}.");
        }
        SessionEnd::NotInBundle { open_portals } if open_portals.is_empty() => {
            let _ = writeln!(
                text,
                "Session end: NOT in this bundle. No access had started by the last event shown; \
                 later events, if any, came after the checkpoint or are not included."
            );
        }
        SessionEnd::NotInBundle { open_portals } => {
            let ids: Vec<String> = open_portals.iter().map(Uuid::to_string).collect();
            let _ = writeln!(
                text,
                "Session end: NOT in this bundle. Access to portal(s) {} had not ended by the \
                 last event shown: it was still open at the checkpoint, or the events after it \
                 are not included. Ask for a bundle against a newer checkpoint.",
                ids.join(", ")
            );
        }
    }

    Summary {
        realm_id: bundle.realm_id,
        access_request_id: bundle.access_request_id,
        origin: checkpoint.origin().to_owned(),
        checkpoint_size: checkpoint.size(),
        signed_by,
        event_count: leaves.len(),
        session_end,
        text,
    }
}

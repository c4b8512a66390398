//! The leaf bytes of an audit event (E1, E5, E7): a canonical, versioned
//! binary encoding, so that anyone holding an event recomputes the exact
//! bytes its Merkle leaf hashes. `docs/evidence/leaf-encoding.md` documents
//! the layout with test vectors, and a test here keeps the two in step.
//!
//! Choices, and why:
//! - A version byte first, so a later layout can coexist in one tree.
//! - The realm id and the realm-local leaf index are inside: a leaf proves
//!   its own place and cannot be shown at another index or in another
//!   realm. The global `sequence` is not: numbering may move to a separate
//!   sequencer (W1) and must not change what was signed.
//! - E5's back-link (the leaf index of the request's previous event) and
//!   the access request id are inside, so a bundle whose links run
//!   unbroken proves no event of the request was left out.
//! - Every variable-length field carries a u32 big-endian length, optional
//!   fields a presence byte: no two events share bytes. Strings are UTF-8,
//!   UUIDs their 16 bytes, time microseconds since the epoch (i64 BE).
//! - Categories, actions and actor kinds are their stable strings, not
//!   numbers, so an old verifier still reads events of a newer server.
//! - Details are sorted by key (byte order) and decoding refuses anything
//!   else: one event, one encoding.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::AuditEvent;
use super::clock::to_micros;
use super::merkle::{Hash, leaf_hash};

/// The layout version this code writes and reads.
pub const LEAF_VERSION: u8 = 1;

/// Everything a leaf says about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafEvent {
    pub realm_id: Uuid,
    /// The event's position in its realm's tree, from 0.
    pub leaf_index: u64,
    pub event_id: Uuid,
    /// Microseconds since 1970-01-01T00:00:00Z.
    pub occurred_at_micros: i64,
    pub portal_id: Option<Uuid>,
    pub category: String,
    pub action: String,
    pub actor_kind: String,
    pub actor_id: String,
    pub actor_agent_id: Option<Uuid>,
    pub actor_agent_name: Option<String>,
    pub target_type: String,
    pub target_id: String,
    pub details: BTreeMap<String, String>,
    /// E5: the access request the event belongs to, if any.
    pub access_request_id: Option<Uuid>,
    /// E5: the leaf index of the previous event of the same request; none
    /// for the request's first event (or an event of no request).
    pub previous_request_leaf: Option<u64>,
}

/// Why leaf bytes did not decode; `offset` is where reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafError {
    pub field: &'static str,
    pub offset: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for LeafError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "field `{}` at byte {}: {}",
            self.field, self.offset, self.reason
        )
    }
}

impl std::error::Error for LeafError {}

impl LeafEvent {
    /// The leaf of a stored event. The E5 links are the writer's to know
    /// (the request an event belongs to and its previous leaf), so they
    /// are passed in.
    pub fn from_audit(
        event: &AuditEvent,
        leaf_index: u64,
        access_request_id: Option<Uuid>,
        previous_request_leaf: Option<u64>,
    ) -> Self {
        Self {
            realm_id: event.realm_id,
            leaf_index,
            event_id: event.id,
            occurred_at_micros: to_micros(event.occurred_at),
            portal_id: event.portal_id,
            category: event.category.as_str().to_owned(),
            action: event.action.clone(),
            actor_kind: event.actor.kind.as_str().to_owned(),
            actor_id: event.actor.id.clone(),
            actor_agent_id: event.actor.agent_id,
            actor_agent_name: event.actor.agent_name.clone(),
            target_type: event.target_type.clone(),
            target_id: event.target_id.clone(),
            details: event.details.clone(),
            access_request_id,
            previous_request_leaf,
        }
    }

    pub fn occurred_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.occurred_at_micros)
    }

    /// The leaf bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_fields(&mut |_, bytes| out.extend_from_slice(bytes));
        out
    }

    /// `SHA-256(0x00 ‖ leaf bytes)`, the tree's leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }

    /// The encoding as (field name, bytes) pieces, for the documentation.
    pub fn encode_annotated(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut pieces: Vec<(&'static str, Vec<u8>)> = Vec::new();
        self.write_fields(&mut |name, bytes| match pieces.last_mut() {
            Some((last, buffer)) if *last == name => buffer.extend_from_slice(bytes),
            _ => pieces.push((name, bytes.to_vec())),
        });
        pieces
    }

    /// The one definition of the layout; `decode` mirrors it field by
    /// field. Names are those of docs/evidence/leaf-encoding.md.
    fn write_fields(&self, sink: &mut impl FnMut(&'static str, &[u8])) {
        sink("version", &[LEAF_VERSION]);
        sink("realm_id", self.realm_id.as_bytes());
        sink("leaf_index", &self.leaf_index.to_be_bytes());
        sink("event_id", self.event_id.as_bytes());
        sink("occurred_at", &self.occurred_at_micros.to_be_bytes());
        write_optional_uuid(sink, "portal_id", self.portal_id);
        write_str(sink, "category", &self.category);
        write_str(sink, "action", &self.action);
        write_str(sink, "actor_kind", &self.actor_kind);
        write_str(sink, "actor_id", &self.actor_id);
        write_optional_uuid(sink, "actor_agent_id", self.actor_agent_id);
        match &self.actor_agent_name {
            None => sink("actor_agent_name", &[0]),
            Some(name) => {
                sink("actor_agent_name", &[1]);
                write_str(sink, "actor_agent_name", name);
            }
        }
        write_str(sink, "target_type", &self.target_type);
        write_str(sink, "target_id", &self.target_id);
        sink("details", &(self.details.len() as u32).to_be_bytes());
        for (key, value) in &self.details {
            write_str(sink, "details", key);
            write_str(sink, "details", value);
        }
        write_optional_uuid(sink, "access_request_id", self.access_request_id);
        match self.previous_request_leaf {
            None => sink("previous_request_leaf", &[0]),
            Some(index) => {
                sink("previous_request_leaf", &[1]);
                sink("previous_request_leaf", &index.to_be_bytes());
            }
        }
    }

    /// Reads leaf bytes back; refuses anything `encode` would not have
    /// written (other versions, bad flags, unsorted details, trailing
    /// bytes), so a decoded leaf re-encodes to the same bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, LeafError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.take("version", 1)?[0];
        if version != LEAF_VERSION {
            return Err(r.fail("version", "unsupported leaf version"));
        }
        let realm_id = r.uuid("realm_id")?;
        let leaf_index = r.u64("leaf_index")?;
        let event_id = r.uuid("event_id")?;
        let occurred_at_micros = r.u64("occurred_at")? as i64;
        let portal_id = r.optional_uuid("portal_id")?;
        let category = r.string("category")?;
        let action = r.string("action")?;
        let actor_kind = r.string("actor_kind")?;
        let actor_id = r.string("actor_id")?;
        let actor_agent_id = r.optional_uuid("actor_agent_id")?;
        let actor_agent_name = if r.present("actor_agent_name")? {
            Some(r.string("actor_agent_name")?)
        } else {
            None
        };
        let target_type = r.string("target_type")?;
        let target_id = r.string("target_id")?;
        let count = r.u32("details")?;
        let mut details = BTreeMap::new();
        for _ in 0..count {
            let key = r.string("details")?;
            let value = r.string("details")?;
            if details
                .last_key_value()
                .is_some_and(|(last, _)| *last >= key)
            {
                return Err(r.fail("details", "keys not in strictly increasing order"));
            }
            details.insert(key, value);
        }
        let access_request_id = r.optional_uuid("access_request_id")?;
        let previous_request_leaf = if r.present("previous_request_leaf")? {
            Some(r.u64("previous_request_leaf")?)
        } else {
            None
        };
        if r.at != bytes.len() {
            return Err(r.fail("end", "bytes after the last field"));
        }
        Ok(Self {
            realm_id,
            leaf_index,
            event_id,
            occurred_at_micros,
            portal_id,
            category,
            action,
            actor_kind,
            actor_id,
            actor_agent_id,
            actor_agent_name,
            target_type,
            target_id,
            details,
            access_request_id,
            previous_request_leaf,
        })
    }
}

fn write_str(sink: &mut impl FnMut(&'static str, &[u8]), name: &'static str, value: &str) {
    sink(name, &(value.len() as u32).to_be_bytes());
    sink(name, value.as_bytes());
}

fn write_optional_uuid(
    sink: &mut impl FnMut(&'static str, &[u8]),
    name: &'static str,
    value: Option<Uuid>,
) {
    match value {
        None => sink(name, &[0]),
        Some(id) => {
            sink(name, &[1]);
            sink(name, id.as_bytes());
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail(&self, field: &'static str, reason: &'static str) -> LeafError {
        LeafError {
            field,
            offset: self.at,
            reason,
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], LeafError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.fail(field, "ends early"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], LeafError> {
        let slice = self.take(field, N)?;
        // `take` returned exactly N bytes.
        Ok(slice.try_into().expect("take returns the length asked"))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, LeafError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, LeafError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn uuid(&mut self, field: &'static str) -> Result<Uuid, LeafError> {
        Ok(Uuid::from_bytes(self.array(field)?))
    }

    fn present(&mut self, field: &'static str) -> Result<bool, LeafError> {
        match self.take(field, 1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.at -= 1;
                Err(self.fail(field, "presence byte is neither 0 nor 1"))
            }
        }
    }

    fn optional_uuid(&mut self, field: &'static str) -> Result<Option<Uuid>, LeafError> {
        Ok(if self.present(field)? {
            Some(self.uuid(field)?)
        } else {
            None
        })
    }

    fn string(&mut self, field: &'static str) -> Result<String, LeafError> {
        let len = self.u32(field)? as usize;
        let start = self.at;
        let bytes = self.take(field, len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| LeafError {
            field,
            offset: start,
            reason: "not UTF-8",
        })
    }
}

/// The examples of docs/evidence/leaf-encoding.md: one short support
/// session (request, allow, one call by the temporary admin) in a new
/// realm, leaves 0, 1 and 2.
#[cfg(test)]
pub(crate) fn documented_examples() -> [LeafEvent; 3] {
    let realm_id = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0001);
    let request_id = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0a01);
    let agent_id = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0a9e);
    let admin_id = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0ad1);
    let portal_id = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0b01);
    let grant_id = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0c01);
    let temporary_admin_id = Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_0d01);
    // 2026-12-01T09:00:00Z
    let nine = 1_796_115_600_000_000_i64;
    let details = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let requested = LeafEvent {
        realm_id,
        leaf_index: 0,
        event_id: Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_e001),
        occurred_at_micros: nine,
        portal_id: None,
        category: "support_session".into(),
        action: "support_access.requested".into(),
        actor_kind: "support_agent".into(),
        actor_id: agent_id.to_string(),
        actor_agent_id: Some(agent_id),
        actor_agent_name: Some("Ana Souza".into()),
        target_type: "access_request".into(),
        target_id: request_id.to_string(),
        details: details(&[
            ("agent_id", &agent_id.to_string()),
            ("agent_name", "Ana Souza"),
            ("expire_time", "2026-12-08T09:00:00+00:00"),
            ("reason", "SCORM import fails for course 42"),
            ("ticket_reference", "SUP-1234"),
        ]),
        access_request_id: Some(request_id),
        previous_request_leaf: None,
    };
    let allowed = LeafEvent {
        leaf_index: 1,
        event_id: Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_e002),
        occurred_at_micros: nine + 600_000_000,
        portal_id: Some(portal_id),
        action: "support_access.allowed".into(),
        actor_kind: "account".into(),
        actor_id: admin_id.to_string(),
        actor_agent_id: None,
        actor_agent_name: None,
        target_type: "support_grant".into(),
        target_id: grant_id.to_string(),
        details: details(&[
            ("access_request_id", &request_id.to_string()),
            ("duration_seconds", "86400"),
            ("expire_time", "2026-12-02T09:10:00+00:00"),
            ("extended", "false"),
        ]),
        previous_request_leaf: Some(0),
        ..requested.clone()
    };
    let call = LeafEvent {
        leaf_index: 2,
        event_id: Uuid::from_u128(0x0193_8e2a_0000_7000_8000_0000_0000_e003),
        occurred_at_micros: nine + 900_123_456,
        action: "support_access.call".into(),
        actor_id: temporary_admin_id.to_string(),
        actor_agent_id: Some(agent_id),
        actor_agent_name: Some("Ana Souza".into()),
        target_type: "rpc".into(),
        target_id: "/portal_access.v1.AdminService/ListUsers".into(),
        details: details(&[
            ("outcome", "OK"),
            ("rpc", "/portal_access.v1.AdminService/ListUsers"),
            ("support_grant_id", &grant_id.to_string()),
        ]),
        previous_request_leaf: Some(1),
        ..allowed.clone()
    };
    [requested, allowed, call]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{Actor, ActorKind, AuditCategory};
    use crate::domain::merkle::root_of;

    #[test]
    fn e1_leaf_round_trips_and_reencodes_identically() {
        for event in documented_examples() {
            let bytes = event.encode();
            let decoded = LeafEvent::decode(&bytes).unwrap();
            assert_eq!(decoded, event);
            assert_eq!(decoded.encode(), bytes);
        }
    }

    #[test]
    fn e1_every_field_changes_the_bytes() {
        let base = documented_examples()[1].clone();
        type Change = Box<dyn Fn(&mut LeafEvent)>;
        let variants: Vec<Change> = vec![
            Box::new(|e| e.realm_id = Uuid::nil()),
            Box::new(|e| e.leaf_index += 1),
            Box::new(|e| e.event_id = Uuid::nil()),
            Box::new(|e| e.occurred_at_micros += 1),
            Box::new(|e| e.portal_id = None),
            Box::new(|e| e.category = "security".into()),
            Box::new(|e| e.action.push('x')),
            Box::new(|e| e.actor_kind = "service".into()),
            Box::new(|e| e.actor_id.push('x')),
            Box::new(|e| e.actor_agent_id = Some(Uuid::nil())),
            Box::new(|e| e.actor_agent_name = Some(String::new())),
            Box::new(|e| e.target_type.push('x')),
            Box::new(|e| e.target_id.push('x')),
            Box::new(|e| {
                e.details.insert("k".into(), "v".into());
            }),
            Box::new(|e| e.access_request_id = None),
            Box::new(|e| e.previous_request_leaf = Some(5)),
            Box::new(|e| e.previous_request_leaf = None),
        ];
        let mut seen = vec![base.encode()];
        for change in variants {
            let mut event = base.clone();
            change(&mut event);
            let bytes = event.encode();
            assert!(!seen.contains(&bytes), "{event:?}");
            seen.push(bytes);
        }
    }

    #[test]
    fn e1_field_boundaries_are_unambiguous() {
        let mut a = documented_examples()[0].clone();
        let mut b = a.clone();
        (a.target_type, a.target_id) = ("ab".into(), "c".into());
        (b.target_type, b.target_id) = ("a".into(), "bc".into());
        assert_ne!(a.encode(), b.encode());
        a.details = BTreeMap::from([("ab".into(), "c".into())]);
        b.details = BTreeMap::from([("a".into(), "bc".into())]);
        assert_ne!(a.encode(), b.encode());
    }

    #[test]
    fn e1_decode_refuses_what_encode_never_writes() {
        let event = documented_examples()[1].clone();
        let bytes = event.encode();
        // Every truncation.
        for len in 0..bytes.len() {
            assert!(LeafEvent::decode(&bytes[..len]).is_err(), "{len}");
        }
        // Trailing bytes.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(LeafEvent::decode(&longer).unwrap_err().field, "end");
        // Another version.
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(LeafEvent::decode(&v2).unwrap_err().field, "version");
        // A presence byte other than 0/1 (portal_id sits after 1+16+8+16+8).
        let mut flag = bytes.clone();
        flag[49] = 2;
        let error = LeafEvent::decode(&flag).unwrap_err();
        assert_eq!((error.field, error.offset), ("portal_id", 49));
        // Unsorted details.
        let mut unsorted = event.clone();
        unsorted.details = BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        let mut raw = unsorted.encode();
        let a = raw
            .windows(5)
            .position(|w| w == [0, 0, 0, 1, b'a'])
            .unwrap();
        let b = raw
            .windows(5)
            .position(|w| w == [0, 0, 0, 1, b'b'])
            .unwrap();
        raw.swap(a + 4, b + 4);
        assert_eq!(LeafEvent::decode(&raw).unwrap_err().field, "details");
        // A huge length is an error, not an allocation.
        let mut huge = bytes.clone();
        huge[66..70].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(LeafEvent::decode(&huge).is_err());
    }

    #[test]
    fn e1_from_audit_keeps_every_field_of_the_event() {
        let example = documented_examples()[2].clone();
        let event = AuditEvent {
            sequence: 99,
            id: example.event_id,
            occurred_at: example.occurred_at().unwrap(),
            realm_id: example.realm_id,
            portal_id: example.portal_id,
            category: AuditCategory::SupportSession,
            action: example.action.clone(),
            actor: Actor {
                kind: ActorKind::Account,
                id: example.actor_id.clone(),
                agent_id: example.actor_agent_id,
                agent_name: example.actor_agent_name.clone(),
            },
            target_type: example.target_type.clone(),
            target_id: example.target_id.clone(),
            details: example.details.clone(),
            prev_hash: String::new(),
            hash: String::new(),
            leaf: None,
            chain_form: Default::default(),
        };
        let leaf = LeafEvent::from_audit(&event, 2, example.access_request_id, Some(1));
        assert_eq!(leaf, example);
    }

    /// The event's fields as plain `name value` lines.
    fn describe(event: &LeafEvent) -> String {
        let uuid = |id: Option<Uuid>| id.map_or("(absent)".to_owned(), |id| id.to_string());
        let time = event
            .occurred_at()
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let mut lines = vec![
            ("realm_id", event.realm_id.to_string()),
            ("leaf_index", event.leaf_index.to_string()),
            ("event_id", event.event_id.to_string()),
            (
                "occurred_at",
                format!("{} ({time})", event.occurred_at_micros),
            ),
            ("portal_id", uuid(event.portal_id)),
            ("category", event.category.clone()),
            ("action", event.action.clone()),
            ("actor_kind", event.actor_kind.clone()),
            ("actor_id", event.actor_id.clone()),
            ("actor_agent_id", uuid(event.actor_agent_id)),
            (
                "actor_agent_name",
                event.actor_agent_name.clone().unwrap_or("(absent)".into()),
            ),
            ("target_type", event.target_type.clone()),
            ("target_id", event.target_id.clone()),
        ];
        for (key, value) in &event.details {
            lines.push(("details", format!("{key} = {value}")));
        }
        lines.push(("access_request_id", uuid(event.access_request_id)));
        lines.push((
            "previous_request_leaf",
            event
                .previous_request_leaf
                .map_or("(absent)".to_owned(), |i| i.to_string()),
        ));
        lines
            .iter()
            .map(|(name, value)| format!("{name:<22}{value}\n"))
            .collect()
    }

    fn hex_lines(bytes: &[u8]) -> String {
        bytes
            .chunks(32)
            .map(hex::encode)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The generated part of docs/evidence/leaf-encoding.md.
    fn documented_vectors() -> String {
        let examples = documented_examples();
        let mut out = String::new();
        out.push_str("<!-- generated by domain::leaf::tests; do not edit by hand -->\n\n");
        out.push_str("### Example 0, field by field\n\n");
        out.push_str("| field | bytes (hex) |\n|---|---|\n");
        for (name, bytes) in examples[0].encode_annotated() {
            out.push_str(&format!("| `{name}` | `{}` |\n", hex::encode(bytes)));
        }
        for (i, event) in examples.iter().enumerate() {
            let bytes = event.encode();
            out.push_str(&format!(
                "\n### Example {i}: `{}`, leaf {}\n\n",
                event.action, event.leaf_index
            ));
            out.push_str(&format!("```text\n{}```\n\n", describe(event)));
            out.push_str(&format!("Leaf bytes ({} bytes):\n\n", bytes.len()));
            out.push_str(&format!("```text\n{}\n```\n\n", hex_lines(&bytes)));
            out.push_str(&format!(
                "Leaf hash `SHA-256(0x00 ‖ leaf bytes)`: `{}`\n",
                hex::encode(event.leaf_hash())
            ));
        }
        let hashes: Vec<Hash> = examples.iter().map(LeafEvent::leaf_hash).collect();
        out.push_str(&format!(
            "\n### The tree of the three\n\nRoot of leaves 0, 1, 2 \
             (`node(node(h0, h1), h2)`): `{}`\n",
            hex::encode(root_of(&hashes))
        ));
        out.push_str("\n<!-- end of generated part -->\n");
        out
    }

    #[test]
    fn e1_documented_test_vectors_match_the_code() {
        let doc = include_str!("../../docs/evidence/leaf-encoding.md");
        let expected = documented_vectors();
        if !doc.contains(&expected) {
            let path = std::env::temp_dir().join("leaf-encoding-vectors.md");
            std::fs::write(&path, &expected).unwrap();
            panic!(
                "docs/evidence/leaf-encoding.md is out of date; the current vectors are in {}",
                path.display()
            );
        }
    }
}

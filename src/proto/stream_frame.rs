//! `portal_access.v1.StreamAuditEventsResponse`, written by hand instead of
//! generated: every subscriber of the audit stream is sent the same event,
//! and with a thousand subscribers converting and encoding it once per
//! subscriber was most of the server's work (SPEC §8 fan-out). This type can
//! carry the message already encoded, shared by every stream that sends it.
//! On the wire it is exactly the generated message; decoding (clients,
//! tests) fills `event` as the generated type would.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType, message, skip_field};

use super::v1::AuditEvent;

const EVENT_TAG: u32 = 1;

#[derive(Clone, Default, PartialEq)]
pub struct StreamAuditEventsResponse {
    /// The event; `None` in a message made by [`Self::from_encoded`].
    pub event: Option<AuditEvent>,
    /// The message's fields, encoded, when it was made from them.
    encoded: Option<Bytes>,
}

impl StreamAuditEventsResponse {
    pub fn new(event: AuditEvent) -> Self {
        Self {
            event: Some(event),
            encoded: None,
        }
    }

    /// The encoded fields of a response carrying `event`.
    pub fn encode_event(event: &AuditEvent) -> Bytes {
        let mut buf = Vec::with_capacity(message::encoded_len(EVENT_TAG, event));
        message::encode(EVENT_TAG, event, &mut buf);
        Bytes::from(buf)
    }

    /// A response that sends `encoded` (from [`Self::encode_event`]) as is.
    pub fn from_encoded(encoded: Bytes) -> Self {
        Self {
            event: None,
            encoded: Some(encoded),
        }
    }
}

impl std::fmt::Debug for StreamAuditEventsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("StreamAuditEventsResponse");
        out.field("event", &self.event);
        if let Some(encoded) = &self.encoded {
            out.field("encoded_len", &encoded.len());
        }
        out.finish()
    }
}

impl prost::Message for StreamAuditEventsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match (&self.encoded, &self.event) {
            (Some(encoded), _) => buf.put_slice(encoded),
            (None, Some(event)) => message::encode(EVENT_TAG, event, buf),
            (None, None) => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.encoded = None;
        if tag == EVENT_TAG {
            let event = self.event.get_or_insert_with(AuditEvent::default);
            message::merge(wire_type, event, buf, ctx).map_err(|mut error| {
                error.push("StreamAuditEventsResponse", "event");
                error
            })
        } else {
            skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        match (&self.encoded, &self.event) {
            (Some(encoded), _) => encoded.len(),
            (None, Some(event)) => message::encoded_len(EVENT_TAG, event),
            (None, None) => 0,
        }
    }

    fn clear(&mut self) {
        self.event = None;
        self.encoded = None;
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::v1::Actor;

    fn event() -> AuditEvent {
        AuditEvent {
            sequence: 42,
            cursor: "c42".into(),
            event_id: "0190".into(),
            action: "support.action".into(),
            actor: Some(Actor {
                kind: 2,
                actor_id: "a".into(),
                agent_id: "g".into(),
                agent_name: "Agent".into(),
            }),
            details: [("k".to_owned(), "v".to_owned())].into(),
            ..AuditEvent::default()
        }
    }

    #[test]
    fn encoded_once_is_the_same_message_on_the_wire() {
        let plain = StreamAuditEventsResponse::new(event()).encode_to_vec();
        let shared = StreamAuditEventsResponse::from_encoded(
            StreamAuditEventsResponse::encode_event(&event()),
        );
        assert_eq!(shared.encoded_len(), plain.len());
        assert_eq!(shared.encode_to_vec(), plain);
        let decoded = StreamAuditEventsResponse::decode(plain.as_slice()).unwrap();
        assert_eq!(decoded.event, Some(event()));
    }

    #[test]
    fn unknown_fields_are_skipped_when_decoding() {
        let mut wire = StreamAuditEventsResponse::new(event()).encode_to_vec();
        // Field 9, varint 7: from a newer contract.
        wire.extend_from_slice(&[9 << 3, 7]);
        let decoded = StreamAuditEventsResponse::decode(wire.as_slice()).unwrap();
        assert_eq!(decoded.event, Some(event()));
    }
}

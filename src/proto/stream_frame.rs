//! `portal_access.v1.StreamAuditEventsResponse`, written by hand instead of
//! generated: every subscriber of the audit stream is sent the same event,
//! and with a thousand subscribers converting and encoding it once per
//! subscriber was most of the server's work (SPEC §8 fan-out). This type can
//! carry the message already encoded, shared by every stream that sends it.
//! On the wire it is exactly the generated message; decoding (clients,
//! tests) fills `event` as the generated type would.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType, message, skip_field};

use super::v1::{AuditEvent, StreamProgress};

const EVENT_TAG: u32 = 1;
const PROGRESS_TAG: u32 = 2;

#[derive(Clone, Default, PartialEq)]
pub struct StreamAuditEventsResponse {
    /// The event; `None` in a message made by [`Self::from_encoded`].
    pub event: Option<AuditEvent>,
    /// Where the stream stands (L9), in a message without an event.
    pub progress: Option<StreamProgress>,
    /// The message's fields, encoded, when it was made from them.
    encoded: Option<Bytes>,
}

impl StreamAuditEventsResponse {
    pub fn new(event: AuditEvent) -> Self {
        Self {
            event: Some(event),
            ..Self::default()
        }
    }

    /// A progress message (L9).
    pub fn progress(progress: StreamProgress) -> Self {
        Self {
            progress: Some(progress),
            ..Self::default()
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
            encoded: Some(encoded),
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for StreamAuditEventsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("StreamAuditEventsResponse");
        out.field("event", &self.event);
        out.field("progress", &self.progress);
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
        if let Some(progress) = &self.progress {
            message::encode(PROGRESS_TAG, progress, buf);
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
        match tag {
            EVENT_TAG => {
                let event = self.event.get_or_insert_with(AuditEvent::default);
                message::merge(wire_type, event, buf, ctx).map_err(|mut error| {
                    error.push("StreamAuditEventsResponse", "event");
                    error
                })
            }
            PROGRESS_TAG => {
                let progress = self.progress.get_or_insert_with(StreamProgress::default);
                message::merge(wire_type, progress, buf, ctx).map_err(|mut error| {
                    error.push("StreamAuditEventsResponse", "progress");
                    error
                })
            }
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let event = match (&self.encoded, &self.event) {
            (Some(encoded), _) => encoded.len(),
            (None, Some(event)) => message::encoded_len(EVENT_TAG, event),
            (None, None) => 0,
        };
        event
            + self
                .progress
                .as_ref()
                .map_or(0, |p| message::encoded_len(PROGRESS_TAG, p))
    }

    fn clear(&mut self) {
        self.event = None;
        self.progress = None;
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

    /// What prost would generate from the .proto for this message.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(message, optional, tag = "1")]
        event: Option<AuditEvent>,
        #[prost(message, optional, tag = "2")]
        progress: Option<StreamProgress>,
    }

    fn progress() -> StreamProgress {
        StreamProgress {
            cursor: "c99".into(),
            sequence: 99,
            checkpoints: vec!["portal-access/x\n1\nAA==\n".into()],
        }
    }

    #[test]
    fn byte_for_byte_the_generated_encoding() {
        let cases = [
            (
                StreamAuditEventsResponse::from_encoded(StreamAuditEventsResponse::encode_event(
                    &event(),
                )),
                Generated {
                    event: Some(event()),
                    progress: None,
                },
            ),
            (
                StreamAuditEventsResponse::progress(progress()),
                Generated {
                    event: None,
                    progress: Some(progress()),
                },
            ),
        ];
        for (ours, generated) in cases {
            let wire = generated.encode_to_vec();
            assert_eq!(ours.encode_to_vec(), wire);
            assert_eq!(ours.encoded_len(), wire.len());
            let decoded = StreamAuditEventsResponse::decode(wire.as_slice()).unwrap();
            assert_eq!(decoded.event, generated.event);
            assert_eq!(decoded.progress, generated.progress);
        }
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

//! The codec of every generated service and client: prost's, except that a
//! message that does not decode (invalid UTF-8 in a string, a truncated
//! field, nesting past prost's recursion limit) is INVALID_ARGUMENT with
//! reason MALFORMED_REQUEST (SPEC §5). prost's own codec answers INTERNAL,
//! which clients and alerts rightly read as a bug of the server.

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::error::{Error, Reason};

/// [`ProstCodec`] with decode failures blamed on the sender.
#[derive(Debug)]
pub struct ProtobufCodec<T, U>(ProstCodec<T, U>);

// By hand: derived impls would ask `T` and `U` for Default and Clone.
impl<T, U> Default for ProtobufCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for ProtobufCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = MalformedIsInvalid<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        MalformedIsInvalid(self.0.decoder())
    }
}

/// prost's decoder with its errors turned into MALFORMED_REQUEST.
#[derive(Debug)]
pub struct MalformedIsInvalid<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for MalformedIsInvalid<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            Error::new(
                Reason::MalformedRequest,
                format!("the message does not decode: {}", status.message()),
            )
            .into()
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

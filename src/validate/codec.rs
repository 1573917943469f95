//! A tonic codec that checks every message it decodes against the rules of
//! its contract: the protobuf codec of tonic-prost, plus the [`Validator`]
//! of the message's type. Generated services name it through
//! `tonic_prost_build::Builder::codec_path`, so every protocol that ends in a
//! tonic service (gRPC, gRPC-Web, and REST and Connect through the
//! transcoder) is checked by the same rules, before the handler runs.

use std::marker::PhantomData;

use bytes::Buf as _;
use prost::{Message, Name};
use prost_reflect::DynamicMessage;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use super::{Validator, Violation};

/// Where a codec finds its rules and how it answers a message that breaks
/// them.
pub trait Contract: Send + Sync + 'static {
    /// The rules of the contract's messages.
    ///
    /// # Errors
    /// Why the rules could not be read; every decode then fails with
    /// INTERNAL (the server checks this at start-up, before it serves).
    fn validator() -> Result<&'static Validator, &'static str>;

    /// The status for a message whose fields break their rules (at least
    /// one violation): INVALID_ARGUMENT with the details the service uses.
    fn invalid(violations: Vec<Violation>) -> Status;
}

/// Types a codec is for, without owning any (so it is `Send` and `Sync`).
type Types<T> = PhantomData<fn() -> T>;

/// tonic-prost's codec, validating what it decodes by `C`'s rules.
#[derive(Debug)]
pub struct ValidatingCodec<T, U, C> {
    _types: Types<(T, U, C)>,
}

impl<T, U, C> Default for ValidatingCodec<T, U, C> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U, C> Codec for ValidatingCodec<T, U, C>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
    C: Contract,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ValidatingDecoder<U, C>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ValidatingDecoder {
            _types: PhantomData,
        }
    }
}

/// Decodes a `U` and checks it against its rules.
#[derive(Debug)]
pub struct ValidatingDecoder<U, C> {
    _types: Types<(U, C)>,
}

impl<U, C> Decoder for ValidatingDecoder<U, C>
where
    U: Message + Name + Default + Send + 'static,
    C: Contract,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let validator = C::validator().map_err(Status::internal)?;
        let Some(rules) = validator.rules(&U::full_name()) else {
            return U::decode(buf).map(Some).map_err(decode_error);
        };
        let bytes = buf.copy_to_bytes(buf.remaining());
        let message = U::decode(bytes.clone()).map_err(decode_error)?;
        let dynamic =
            DynamicMessage::decode(rules.descriptor().clone(), bytes).map_err(decode_error)?;
        validator.check(&dynamic).map_err(C::invalid)?;
        Ok(Some(message))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// As tonic-prost answers a message that does not decode (INTERNAL, which
/// the server's status normalization turns into INVALID_ARGUMENT).
fn decode_error(error: prost::DecodeError) -> Status {
    Status::internal(error.to_string())
}

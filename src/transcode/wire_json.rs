//! A protobuf-encoded reply written straight as JSON, without decoding it
//! into a dynamic message first: the REST layer's fast way out for the
//! common shapes of a reply (scalars other than floats, strings, bytes,
//! enums, nested messages, repeated fields, `google.protobuf.Timestamp`).
//!
//! It writes byte for byte what [`JsonOptions::to_json_bytes`] writes
//! (prost-reflect's proto3 JSON mapping under the same options): fields in
//! field-number order, defaults as the options say, 64-bit integers as
//! strings, enums by name, bytes in base64. A type holding anything else
//! (maps, floats, other well-known types, proto2, recursion) gets no
//! [`WireJson`]; a payload this writer does not take as it is (a singular
//! message or two members of a oneof sent twice, where the mapping merges
//! or keeps the last, a wire type that does not match, a group, invalid
//! UTF-8, a timestamp out of range) makes [`WireJson::write`] answer `None`,
//! and the caller takes the general path, which decodes the message in
//! full and answers the same or fails the same.

use std::io::Write as _;

use base64::Engine as _;
use bytes::Buf as _;
use prost::Message as _;
use prost::encoding::decode_varint;
use prost_reflect::{EnumDescriptor, Kind, MessageDescriptor, Syntax};

use super::JsonOptions;

/// How to write one message type's encoded form as JSON.
#[derive(Debug)]
pub struct WireJson {
    root: MessagePlan,
}

impl WireJson {
    /// The plan for `message` under `options`, or `None` when the type
    /// holds something only the general path writes.
    pub fn new(message: &MessageDescriptor, options: &JsonOptions) -> Option<Self> {
        let root = MessagePlan::new(message, options, &mut Vec::new())?;
        Some(Self { root })
    }

    /// The JSON of the encoded message `payload`, or `None` when it should
    /// go the general way.
    pub fn write(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(64 + payload.len() * 2);
        self.root.write(payload, &mut out)?;
        Some(out)
    }
}

#[derive(Debug)]
struct MessagePlan {
    /// In the order the mapping writes them: by field number.
    fields: Vec<FieldPlan>,
    emit_defaults: bool,
}

#[derive(Debug)]
struct FieldPlan {
    number: u32,
    /// `"name":`, escaped.
    key: Vec<u8>,
    kind: ValueKind,
    repeated: bool,
    /// Written only when set (message fields, `optional`, oneof members).
    presence: bool,
    /// Its oneof, by position in the message's oneofs.
    oneof: Option<usize>,
}

#[derive(Debug)]
enum ValueKind {
    Bool,
    Int32,
    Sint32,
    Sfixed32,
    Uint32,
    Fixed32,
    Int64,
    Sint64,
    Sfixed64,
    Uint64,
    Fixed64,
    String,
    Bytes,
    Enum(EnumDescriptor),
    Message(Box<MessagePlan>),
    Timestamp,
}

/// One field occurrence on the wire.
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// A scalar read from the wire, ready to write.
enum Scalar<'a> {
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    /// 64-bit integers are strings in the mapping.
    Signed64(i64),
    Unsigned64(u64),
    Enum(i32),
    Raw(&'a [u8]),
}

impl MessagePlan {
    fn new(
        message: &MessageDescriptor,
        options: &JsonOptions,
        seen: &mut Vec<String>,
    ) -> Option<Self> {
        if message.parent_file().syntax() != Syntax::Proto3
            || message.full_name().starts_with("google.protobuf.")
            || message.extensions().next().is_some()
            || seen.iter().any(|s| s == message.full_name())
        {
            return None;
        }
        seen.push(message.full_name().to_owned());
        let oneofs: Vec<String> = message.oneofs().map(|o| o.full_name().to_owned()).collect();
        let mut fields = Vec::new();
        for field in message.fields() {
            if field.is_map() || field.is_group() {
                return None;
            }
            let kind = match field.kind() {
                Kind::Bool => ValueKind::Bool,
                Kind::Int32 => ValueKind::Int32,
                Kind::Sint32 => ValueKind::Sint32,
                Kind::Sfixed32 => ValueKind::Sfixed32,
                Kind::Uint32 => ValueKind::Uint32,
                Kind::Fixed32 => ValueKind::Fixed32,
                Kind::Int64 => ValueKind::Int64,
                Kind::Sint64 => ValueKind::Sint64,
                Kind::Sfixed64 => ValueKind::Sfixed64,
                Kind::Uint64 => ValueKind::Uint64,
                Kind::Fixed64 => ValueKind::Fixed64,
                Kind::String => ValueKind::String,
                Kind::Bytes => ValueKind::Bytes,
                Kind::Enum(e) if e.full_name() != "google.protobuf.NullValue" => ValueKind::Enum(e),
                Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
                    ValueKind::Timestamp
                }
                Kind::Message(m) => ValueKind::Message(Box::new(Self::new(&m, options, seen)?)),
                Kind::Float | Kind::Double | Kind::Enum(_) => return None,
            };
            let name = if options.use_proto_names {
                field.name()
            } else {
                field.json_name()
            };
            let mut key = serde_json::to_vec(name).ok()?;
            key.push(b':');
            fields.push(FieldPlan {
                number: field.number(),
                key,
                kind,
                repeated: field.is_list(),
                presence: field.supports_presence(),
                oneof: field
                    .containing_oneof()
                    .and_then(|o| oneofs.iter().position(|n| n == o.full_name())),
            });
        }
        seen.pop();
        Some(Self {
            fields,
            emit_defaults: options.emit_defaults,
        })
    }

    fn field_index(&self, number: u32) -> Option<usize> {
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .or_else(|| self.fields.iter().position(|f| f.number == number))
    }

    fn write(&self, mut buf: &[u8], out: &mut Vec<u8>) -> Option<()> {
        // Every occurrence of a known field, in wire order; unknown fields
        // are not written by the mapping.
        let mut seen: Vec<(usize, Raw<'_>)> = Vec::with_capacity(self.fields.len());
        let mut oneof_members: Vec<(usize, usize)> = Vec::new();
        while !buf.is_empty() {
            // A key is a u32, as protobuf reads it.
            let key = u32::try_from(decode_varint(&mut buf).ok()?).ok()?;
            let number = key >> 3;
            let raw = match key & 7 {
                0 => Raw::Varint(decode_varint(&mut buf).ok()?),
                1 if buf.len() >= 8 => Raw::Fixed64(buf.get_u64_le()),
                2 => {
                    let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                    if buf.len() < len {
                        return None;
                    }
                    let (head, tail) = buf.split_at(len);
                    buf = tail;
                    Raw::Bytes(head)
                }
                5 if buf.len() >= 4 => Raw::Fixed32(buf.get_u32_le()),
                _ => return None,
            };
            if number == 0 {
                return None;
            }
            let Some(index) = self.field_index(number) else {
                continue;
            };
            if let Some(oneof) = self.fields[index].oneof {
                match oneof_members.iter().find(|(o, _)| *o == oneof) {
                    Some((_, member)) if *member != index => return None,
                    Some(_) => {}
                    None => oneof_members.push((oneof, index)),
                }
            }
            seen.push((index, raw));
        }
        // Stable: each field's occurrences stay in wire order.
        seen.sort_by_key(|(index, _)| *index);

        out.push(b'{');
        let mut first = true;
        let mut rest = seen.as_slice();
        for (index, field) in self.fields.iter().enumerate() {
            let count = rest.iter().take_while(|(i, _)| *i == index).count();
            let (occurrences, after) = rest.split_at(count);
            rest = after;
            let mark = out.len();
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(&field.key);
            let written = if field.repeated {
                field.write_list(occurrences, self.emit_defaults, out)?
            } else {
                field.write_single(occurrences, self.emit_defaults, out)?
            };
            if written {
                first = false;
            } else {
                out.truncate(mark);
            }
        }
        out.push(b'}');
        Some(())
    }
}

impl FieldPlan {
    /// Writes the value of a singular field after its key; `false` when the
    /// field is not written at all.
    fn write_single(
        &self,
        occurrences: &[(usize, Raw<'_>)],
        emit_defaults: bool,
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        let count = occurrences.len();
        // The last occurrence wins, but protobuf reads (and may refuse)
        // every one.
        if !matches!(self.kind, ValueKind::Message(_) | ValueKind::Timestamp) {
            for (_, raw) in occurrences {
                self.checked(*raw)?;
            }
        }
        let last = occurrences.last().map(|(_, raw)| *raw);
        match (&self.kind, last) {
            (ValueKind::Message(plan), Some(Raw::Bytes(bytes))) if count == 1 => {
                plan.write(bytes, out)?;
                Some(true)
            }
            (ValueKind::Timestamp, Some(Raw::Bytes(bytes))) if count == 1 => {
                let timestamp = prost_types::Timestamp::decode(bytes).ok()?;
                // The seconds the mapping can write (years 1 to 9999), checked
                // as prost-reflect checks them; out of range, the general path
                // answers the error.
                if !(-62_135_596_800..=253_402_300_799).contains(&timestamp.seconds) {
                    return None;
                }
                write!(out, "\"{timestamp}\"").ok()?;
                Some(true)
            }
            (ValueKind::Message(_) | ValueKind::Timestamp, Some(_)) => None,
            (_, None) if self.presence => Some(false),
            (ValueKind::Message(_) | ValueKind::Timestamp, None) => Some(false),
            (_, None) if !emit_defaults => Some(false),
            (_, None) => {
                self.write_default(out);
                Some(true)
            }
            (_, Some(raw)) => {
                let scalar = self.scalar(raw)?;
                if !self.presence && !emit_defaults && is_default(&scalar, self) {
                    return Some(false);
                }
                self.write_scalar(&scalar, out)?;
                Some(true)
            }
        }
    }

    /// Writes a repeated field's list after its key; `false` when it is
    /// empty and defaults are not written.
    fn write_list(
        &self,
        occurrences: &[(usize, Raw<'_>)],
        emit_defaults: bool,
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        if occurrences.is_empty() && !emit_defaults {
            return Some(false);
        }
        out.push(b'[');
        let mut first = true;
        let mut separate = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        for (_, raw) in occurrences {
            match (&self.kind, *raw) {
                (ValueKind::Message(plan), Raw::Bytes(bytes)) => {
                    separate(out);
                    plan.write(bytes, out)?;
                }
                (ValueKind::Timestamp, Raw::Bytes(_)) => {
                    separate(out);
                    self.write_single(&[(0, *raw)], true, out)?;
                }
                (ValueKind::String | ValueKind::Bytes, Raw::Bytes(_)) => {
                    separate(out);
                    let scalar = self.checked(*raw)?;
                    self.write_scalar(&scalar, out)?;
                }
                (ValueKind::Message(_) | ValueKind::Timestamp, _) => return None,
                (ValueKind::String | ValueKind::Bytes, _) => return None,
                // A packed run of numbers.
                (_, Raw::Bytes(mut packed)) => {
                    while !packed.is_empty() {
                        let raw = match self.wire_type() {
                            0 => Raw::Varint(decode_varint(&mut packed).ok()?),
                            1 if packed.len() >= 8 => Raw::Fixed64(packed.get_u64_le()),
                            5 if packed.len() >= 4 => Raw::Fixed32(packed.get_u32_le()),
                            _ => return None,
                        };
                        separate(out);
                        let scalar = self.scalar(raw)?;
                        self.write_scalar(&scalar, out)?;
                    }
                }
                (_, raw) => {
                    separate(out);
                    let scalar = self.scalar(raw)?;
                    self.write_scalar(&scalar, out)?;
                }
            }
        }
        out.push(b']');
        Some(true)
    }

    /// The wire type of one number of this field's kind.
    fn wire_type(&self) -> u8 {
        match self.kind {
            ValueKind::Fixed64 | ValueKind::Sfixed64 => 1,
            ValueKind::Fixed32 | ValueKind::Sfixed32 => 5,
            ValueKind::String | ValueKind::Bytes | ValueKind::Message(_) | ValueKind::Timestamp => {
                2
            }
            _ => 0,
        }
    }

    /// [`Self::scalar`], with a string's UTF-8 checked as protobuf checks it.
    fn checked<'a>(&self, raw: Raw<'a>) -> Option<Scalar<'a>> {
        let scalar = self.scalar(raw)?;
        if let (ValueKind::String, Scalar::Raw(bytes)) = (&self.kind, &scalar) {
            std::str::from_utf8(bytes).ok()?;
        }
        Some(scalar)
    }

    /// A scalar as prost decodes it from `raw`, or `None` when the wire
    /// type does not match.
    fn scalar<'a>(&self, raw: Raw<'a>) -> Option<Scalar<'a>> {
        // `as` converts exactly as protobuf does: int32 keeps the low 32 bits
        // of its varint, uint64 is read as two's complement for int64.
        Some(match (&self.kind, raw) {
            (ValueKind::Bool, Raw::Varint(v)) => Scalar::Bool(v != 0),
            (ValueKind::Int32, Raw::Varint(v)) => Scalar::Signed(i64::from(v as i32)),
            (ValueKind::Sint32, Raw::Varint(v)) => {
                let v = v as u32;
                Scalar::Signed(i64::from((v >> 1) as i32 ^ -((v & 1) as i32)))
            }
            (ValueKind::Sfixed32, Raw::Fixed32(v)) => Scalar::Signed(i64::from(v as i32)),
            (ValueKind::Uint32, Raw::Varint(v)) => Scalar::Unsigned(u64::from(v as u32)),
            (ValueKind::Fixed32, Raw::Fixed32(v)) => Scalar::Unsigned(u64::from(v)),
            (ValueKind::Int64, Raw::Varint(v)) => Scalar::Signed64(v as i64),
            (ValueKind::Sint64, Raw::Varint(v)) => {
                Scalar::Signed64((v >> 1) as i64 ^ -((v & 1) as i64))
            }
            (ValueKind::Sfixed64, Raw::Fixed64(v)) => Scalar::Signed64(v as i64),
            (ValueKind::Uint64, Raw::Varint(v)) | (ValueKind::Fixed64, Raw::Fixed64(v)) => {
                Scalar::Unsigned64(v)
            }
            (ValueKind::Enum(_), Raw::Varint(v)) => Scalar::Enum(v as i32),
            (ValueKind::String | ValueKind::Bytes, Raw::Bytes(b)) => Scalar::Raw(b),
            _ => return None,
        })
    }

    fn write_scalar(&self, scalar: &Scalar<'_>, out: &mut Vec<u8>) -> Option<()> {
        match scalar {
            Scalar::Bool(true) => out.extend_from_slice(b"true"),
            Scalar::Bool(false) => out.extend_from_slice(b"false"),
            Scalar::Signed(v) => write!(out, "{v}").ok()?,
            Scalar::Unsigned(v) => write!(out, "{v}").ok()?,
            Scalar::Signed64(v) => write!(out, "\"{v}\"").ok()?,
            Scalar::Unsigned64(v) => write!(out, "\"{v}\"").ok()?,
            Scalar::Enum(number) => match &self.kind {
                ValueKind::Enum(e) => match e.get_value(*number) {
                    Some(value) => serde_json::to_writer(&mut *out, value.name()).ok()?,
                    None => write!(out, "{number}").ok()?,
                },
                _ => return None,
            },
            Scalar::Raw(bytes) => match self.kind {
                ValueKind::String => {
                    let text = std::str::from_utf8(bytes).ok()?;
                    serde_json::to_writer(&mut *out, text).ok()?;
                }
                _ => {
                    out.push(b'"');
                    out.extend_from_slice(
                        base64::engine::general_purpose::STANDARD
                            .encode(bytes)
                            .as_bytes(),
                    );
                    out.push(b'"');
                }
            },
        }
        Some(())
    }

    /// The value of an unset field without presence.
    fn write_default(&self, out: &mut Vec<u8>) {
        match &self.kind {
            ValueKind::Bool => out.extend_from_slice(b"false"),
            ValueKind::Int64
            | ValueKind::Sint64
            | ValueKind::Sfixed64
            | ValueKind::Uint64
            | ValueKind::Fixed64 => out.extend_from_slice(b"\"0\""),
            ValueKind::String | ValueKind::Bytes => out.extend_from_slice(b"\"\""),
            ValueKind::Enum(e) => {
                let default = e.default_value();
                if serde_json::to_writer(&mut *out, default.name()).is_err() {
                    let _ = write!(out, "{}", default.number());
                }
            }
            _ => out.push(b'0'),
        }
    }
}

/// Whether `scalar` is its field's default (proto3: zero, empty, the first
/// enum value).
fn is_default(scalar: &Scalar<'_>, field: &FieldPlan) -> bool {
    match scalar {
        Scalar::Bool(v) => !v,
        Scalar::Signed(v) | Scalar::Signed64(v) => *v == 0,
        Scalar::Unsigned(v) | Scalar::Unsigned64(v) => *v == 0,
        Scalar::Enum(v) => match &field.kind {
            ValueKind::Enum(e) => *v == e.default_value().number(),
            _ => false,
        },
        Scalar::Raw(bytes) => bytes.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    //! The writer against the general path on the echo service's types
    //! (the inventory's are checked the same way in `tests/wire_json.rs`).

    use prost_reflect::DescriptorPool;

    use super::*;
    use crate::transcode::fuzzing::{
        arbitrary_message, reply_json_agrees, reply_json_agrees_for_seed,
    };

    const ECHO_DESCRIPTORS: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/echo_descriptor.bin"));

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(ECHO_DESCRIPTORS).expect("echo descriptors")
    }

    #[test]
    fn types_with_floats_maps_or_other_well_known_types_get_no_plan() {
        let pool = pool();
        let options = JsonOptions::default();
        let request = pool
            .get_message_by_name("echo.v1.EchoRequest")
            .expect("EchoRequest");
        assert!(
            WireJson::new(&request, &options).is_none(),
            "it holds a double"
        );
        let tick = pool.get_message_by_name("echo.v1.Tick").expect("Tick");
        assert!(WireJson::new(&tick, &options).is_some());
    }

    /// A field key on the wire.
    fn key(number: u32, wire_type: u8) -> u8 {
        u8::try_from(number << 3).expect("small") | wire_type
    }

    #[test]
    fn unpacked_lists_repeated_scalars_and_unknown_fields_are_read_as_protobuf_reads_them() {
        let pool = pool();
        let options = JsonOptions::default();
        let tick = pool.get_message_by_name("echo.v1.Tick").expect("Tick");
        let plan = WireJson::new(&tick, &options).expect("a plan");
        // seq (1) twice: the last wins; an unknown varint field 15 and an
        // unknown length-delimited field 14 are skipped.
        let bytes = [
            key(1, 0),
            5,
            key(15, 0),
            1,
            key(14, 2),
            2,
            b'h',
            b'i',
            key(1, 0),
            7,
        ];
        reply_json_agrees(&tick, &options, &bytes);
        let json = String::from_utf8(plan.write(&bytes).expect("taken")).expect("utf-8");
        assert!(json.contains(r#""seq":"7""#), "{json}");
        // Truncated, or a group: declined.
        assert!(plan.write(&[key(1, 0)]).is_none());
        assert!(plan.write(&[key(1, 3)]).is_none());
    }

    #[test]
    fn each_plain_echo_type_is_taken_and_written_as_the_general_path_writes_it() {
        let pool = pool();
        let options = JsonOptions::default();
        let mut planned = 0;
        for message in pool.all_messages() {
            let Some(plan) = WireJson::new(&message, &options) else {
                continue;
            };
            planned += 1;
            for seed in 0..200 {
                let bytes = arbitrary_message(&message, seed).encode_to_vec();
                assert!(
                    plan.write(&bytes).is_some(),
                    "{} seed {seed}",
                    message.full_name()
                );
                reply_json_agrees_for_seed(&message, seed);
            }
        }
        assert!(planned >= 5, "{planned} echo types planned");
    }
}

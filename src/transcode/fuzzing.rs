//! Entry points for the fuzz targets in `fuzz/` and for the tests that
//! replay what they found (`tests/fuzz_regressions.rs`). Each takes
//! arbitrary bytes, runs one piece of the layer on them, and panics only if
//! the layer breaks one of its own promises (never a panic, never a 5xx
//! for a client's bytes).

use std::convert::Infallible;
use std::sync::OnceLock;

use http::{HeaderValue, Method, Request, Response};
use tonic::body::Body;
use tower::{Layer as _, ServiceExt as _};

use super::template::{PathTemplate, percent_decode};
use super::{TranscodeLayer, TranscodeOptions, Transcoder};

/// Splits `data` at its first newline: (before, after).
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// The first line is a path template, the rest a request path: parsing,
/// matching and percent-decoding never panic, and a match yields one value
/// per variable.
pub fn template_and_path(data: &[u8]) {
    let (template, path) = split_line(data);
    let (Ok(template), Ok(path)) = (std::str::from_utf8(template), std::str::from_utf8(path))
    else {
        return;
    };
    let _ = percent_decode(path, false);
    let _ = percent_decode(path, true);
    let Ok(parsed) = PathTemplate::parse(template) else {
        return;
    };
    let _ = parsed.shape();
    if let Some(values) = parsed.matches(path) {
        assert_eq!(
            values.len(),
            parsed.variables.len(),
            "{template:?} {path:?}"
        );
    }
    // A template that parses, parsed again from its source, is the same.
    assert_eq!(PathTemplate::parse(&parsed.source).as_ref(), Ok(&parsed));
}

/// The layer over the inventory's descriptors, in front of a router that
/// answers every call OK with an empty message.
fn layer() -> &'static TranscodeLayer {
    static LAYER: OnceLock<TranscodeLayer> = OnceLock::new();
    LAYER.get_or_init(|| {
        let transcoder =
            Transcoder::new(crate::pb::FILE_DESCRIPTOR_SET, TranscodeOptions::default());
        TranscodeLayer::new(transcoder.unwrap_or_else(|e| panic!("the inventory's rules: {e}")))
    })
}

/// The methods a request may use, chosen by the first byte.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

/// The first byte picks a method; the first line after it is the path and
/// query; the rest is a JSON body (REST, or Connect for `/pkg.Service/M`
/// paths). Whatever the bytes, the layer answers, and never with a 5xx: a
/// client's bytes are the client's fault.
pub async fn request(data: &[u8]) {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let (target, body) = split_line(rest);
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let Ok(request) = Request::builder()
        .method(METHODS[usize::from(*selector) % METHODS.len()].clone())
        .uri(target)
        .header("content-type", "application/json")
        .body(Body::new(http_body_util::Full::new(
            bytes::Bytes::copy_from_slice(body),
        )))
    else {
        return;
    };
    let router = tower::service_fn(|_: Request<Body>| async {
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        Ok::<_, Infallible>(response)
    });
    let response = layer()
        .layer(router)
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    assert!(
        !response.status().is_server_error(),
        "{target:?} answered {}",
        response.status()
    );
}

/// The first byte picks a reply type of the inventory service, the rest is
/// read as its encoded form: [`reply_json_agrees`] under both namings and
/// both default choices.
pub fn reply_json(data: &[u8]) {
    static OUTPUTS: OnceLock<Vec<prost_reflect::MessageDescriptor>> = OnceLock::new();
    let outputs = OUTPUTS.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .map(|pool| {
                pool.services()
                    .flat_map(|s| s.methods().map(|m| m.output()).collect::<Vec<_>>())
                    .collect()
            })
            .unwrap_or_default()
    });
    let (Some((&pick, payload)), false) = (data.split_first(), outputs.is_empty()) else {
        return;
    };
    let message = &outputs[usize::from(pick) % outputs.len()];
    for options in both_json_options() {
        reply_json_agrees(message, &options, payload);
    }
}

/// The default JSON options, and their opposite in naming and defaults.
fn both_json_options() -> [super::JsonOptions; 2] {
    let renamed = super::JsonOptions {
        use_proto_names: false,
        emit_defaults: false,
        deny_unknown_fields: true,
    };
    [super::JsonOptions::default(), renamed]
}

/// Writing an encoded reply of type `message` straight as JSON
/// ([`super::wire_json::WireJson`]) agrees with decoding it and writing the
/// dynamic message: whatever `payload` holds, the fast writer either
/// declines or writes exactly what the general path writes, and never takes
/// bytes the general path refuses.
pub fn reply_json_agrees(
    message: &prost_reflect::MessageDescriptor,
    options: &super::JsonOptions,
    payload: &[u8],
) {
    let Some(plan) = super::wire_json::WireJson::new(message, options) else {
        return;
    };
    let Some(fast) = plan.write(payload) else {
        return;
    };
    let decoded = prost_reflect::DynamicMessage::decode(message.clone(), payload)
        .expect("the fast writer took bytes the general path cannot decode");
    let general = options
        .to_json_bytes(&decoded, false)
        .expect("the fast writer took a message the general path cannot write");
    assert_eq!(
        String::from_utf8_lossy(&fast),
        String::from_utf8_lossy(&general),
        "{}",
        message.full_name()
    );
}

/// [`reply_json_agrees`] under both namings and both default choices, on
/// the message [`arbitrary_message`] makes of `seed`: sent once, twice over
/// (lists grow, messages merge, scalars take the last value), damaged at a
/// byte the seed picks, and cut there.
pub fn reply_json_agrees_for_seed(message: &prost_reflect::MessageDescriptor, seed: u64) {
    use prost::Message as _;
    for options in both_json_options() {
        let once = arbitrary_message(message, seed).encode_to_vec();
        reply_json_agrees(message, &options, &once);
        let mut bytes = [once.as_slice(), once.as_slice()].concat();
        reply_json_agrees(message, &options, &bytes);
        if !bytes.is_empty() {
            let at = usize::try_from(seed).unwrap_or(0) % bytes.len();
            bytes[at] ^= u8::try_from(seed % 251).unwrap_or(1) | 1;
            reply_json_agrees(message, &options, &bytes);
            bytes.truncate(at);
            reply_json_agrees(message, &options, &bytes);
        }
    }
}

/// A message of type `message` with fields chosen from `seed`: edge values
/// of every kind (extreme integers, empty and escaped strings, unknown enum
/// numbers, nested messages two deep, short lists, timestamps), for
/// differential tests of the JSON writers.
pub fn arbitrary_message(
    message: &prost_reflect::MessageDescriptor,
    seed: u64,
) -> prost_reflect::DynamicMessage {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    arbitrary_message_at(message, &mut state, 0)
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn arbitrary_message_at(
    message: &prost_reflect::MessageDescriptor,
    state: &mut u64,
    depth: usize,
) -> prost_reflect::DynamicMessage {
    use prost_reflect::{DynamicMessage, Value};
    let mut value = DynamicMessage::new(message.clone());
    if message.full_name() == "google.protobuf.Timestamp" {
        let seconds = [0, 1, -1, 1_764_900_000, 253_402_300_799, -62_135_596_800];
        let nanos = [0, 1, 1_000, 1_000_000, 123_456_789, 999_999_999];
        value.set_field_by_name("seconds", Value::I64(seconds[(next(state) % 6) as usize]));
        value.set_field_by_name("nanos", Value::I32(nanos[(next(state) % 6) as usize]));
        return value;
    }
    for field in message.fields() {
        if next(state) % 10 < 3 || field.is_map() {
            continue;
        }
        let one = |state: &mut u64| -> Option<Value> {
            let pick = next(state);
            Some(match field.kind() {
                prost_reflect::Kind::Bool => Value::Bool(pick.is_multiple_of(2)),
                prost_reflect::Kind::Int32
                | prost_reflect::Kind::Sint32
                | prost_reflect::Kind::Sfixed32 => {
                    Value::I32([0, 1, -1, i32::MIN, i32::MAX, 42][(pick % 6) as usize])
                }
                prost_reflect::Kind::Uint32 | prost_reflect::Kind::Fixed32 => {
                    Value::U32([0, 1, u32::MAX, 7][(pick % 4) as usize])
                }
                prost_reflect::Kind::Int64
                | prost_reflect::Kind::Sint64
                | prost_reflect::Kind::Sfixed64 => {
                    Value::I64([0, 1, -1, i64::MIN, i64::MAX, 1 << 53][(pick % 6) as usize])
                }
                prost_reflect::Kind::Uint64 | prost_reflect::Kind::Fixed64 => {
                    Value::U64([0, 1, u64::MAX, 1 << 60][(pick % 4) as usize])
                }
                prost_reflect::Kind::Float => Value::F32([0.0, 1.5, -2.0][(pick % 3) as usize]),
                prost_reflect::Kind::Double => Value::F64([0.0, 0.1, 1e300][(pick % 3) as usize]),
                prost_reflect::Kind::String => Value::String(
                    [
                        "",
                        "sku-1",
                        "ü€🎉",
                        "quote \" back \\ slash",
                        "\u{1}\n\t</script>",
                    ][(pick % 5) as usize]
                        .to_owned(),
                ),
                prost_reflect::Kind::Bytes => {
                    Value::Bytes(bytes::Bytes::from(vec![0xFF_u8; (pick % 5) as usize]))
                }
                prost_reflect::Kind::Enum(e) => {
                    let numbers: Vec<i32> = e.values().map(|v| v.number()).collect();
                    let at = (pick as usize) % (numbers.len() + 1);
                    Value::EnumNumber(numbers.get(at).copied().unwrap_or(99))
                }
                prost_reflect::Kind::Message(m) => {
                    if depth >= 2 {
                        return None;
                    }
                    Value::Message(arbitrary_message_at(&m, state, depth + 1))
                }
            })
        };
        if field.is_list() {
            let count = next(state) % 4;
            let items: Vec<Value> = (0..count).filter_map(|_| one(state)).collect();
            value.set_field(&field, Value::List(items));
        } else if let Some(item) = one(state) {
            value.set_field(&field, item);
        }
    }
    value
}

//! Building the request message of a REST call from its three sources: the
//! path variables, the query string and the JSON body.
//!
//! All three are merged into one JSON object in the proto3 JSON mapping and
//! decoded once by prost-reflect, so every field type (enums by name, 64-bit
//! integers as strings, wrappers, Timestamp, Duration, FieldMask) and every
//! range check behaves exactly as in a JSON body. Precedence: path over
//! query over body.

use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use super::routes::{BodyBinding, Route, resolve_field_path};
use super::{JsonOptions, TranscodeError};

/// Decodes the request message of `route` from its parts.
pub fn build_message(
    route: &Route,
    path_values: Vec<String>,
    query: Option<&str>,
    body: Option<Value>,
    options: &JsonOptions,
) -> Result<DynamicMessage, TranscodeError> {
    let input = route.grpc.input();
    if body.is_none()
        && query.is_none_or(str::is_empty)
        && let Some(message) = from_string_path_values(&input, route, &path_values)
    {
        return Ok(message);
    }
    let mut root = match (&route.body, body) {
        (BodyBinding::Whole, Some(Value::Object(object))) => object,
        (BodyBinding::Whole, Some(other)) => {
            return Err(TranscodeError::invalid(format!(
                "the request body must be a JSON object, not {}",
                json_kind(&other)
            )));
        }
        (BodyBinding::Field(field), Some(value)) => {
            let mut root = Map::new();
            root.insert(field.name().to_owned(), value);
            root
        }
        (_, _) => Map::new(),
    };

    if let Some(query) = query.filter(|q| !q.is_empty()) {
        bind_query(route, &input, &mut root, query, options)?;
    }
    for (fields, value) in route.path_fields.iter().zip(path_values) {
        let leaf = scalar_json(fields_last(fields)?, &value)?;
        if let Some(sent) = get_path(&root, fields)
            && !same_scalar(sent, &leaf)
        {
            let name = fields
                .iter()
                .map(FieldDescriptor::name)
                .collect::<Vec<_>>()
                .join(".");
            return Err(TranscodeError::invalid_field(
                &name,
                "CONTRADICTS_PATH",
                format!(
                    "the body's {name} {sent} contradicts the path's {name} {value:?}; \
                     leave it out of the body"
                ),
            ));
        }
        set_path(&mut root, fields, leaf, false);
    }

    decode_value(input, Value::Object(root), options)
}

/// The fast path of the most common REST call, a GET whose only inputs are
/// top-level string path variables: the message is built directly, without
/// a JSON round trip. `None` when the route needs the general path.
fn from_string_path_values(
    input: &MessageDescriptor,
    route: &Route,
    values: &[String],
) -> Option<DynamicMessage> {
    let mut message = DynamicMessage::new(input.clone());
    for (fields, value) in route.path_fields.iter().zip(values) {
        let [field] = fields.as_slice() else {
            return None;
        };
        if field.kind() != Kind::String {
            return None;
        }
        message.set_field(field, prost_reflect::Value::String(value.clone()));
    }
    Some(message)
}

/// Decodes a JSON value as `message`; errors name the field at fault. The
/// path tracking only runs again once decoding has failed.
fn decode_value(
    message: MessageDescriptor,
    value: Value,
    options: &JsonOptions,
) -> Result<DynamicMessage, TranscodeError> {
    let decode_options = DeserializeOptions::new().deny_unknown_fields(options.deny_unknown_fields);
    let error =
        match DynamicMessage::deserialize_with_options(message.clone(), &value, &decode_options) {
            Ok(decoded) => return Ok(decoded),
            Err(error) => error,
        };
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(&value, &mut track);
    let _ = DynamicMessage::deserialize_with_options(message, deserializer, &decode_options);
    let path = track.path().to_string();
    Err(if path.is_empty() || path == "?" || path == "." {
        TranscodeError::invalid(format!("invalid request: {error}"))
    } else {
        TranscodeError::invalid_field(
            &path,
            "INVALID_VALUE",
            format!("invalid request: {path}: {error}"),
        )
    })
}

/// Decodes a whole JSON body as `message` (the Connect protocol's JSON form).
pub fn decode_json(
    message: MessageDescriptor,
    body: &[u8],
    options: &JsonOptions,
) -> Result<DynamicMessage, TranscodeError> {
    decode_value(message, parse_json(body)?, options)
}

/// Parses a JSON body; empty means no body. An object that names a key
/// twice is refused: which of the two a reader keeps differs between
/// parsers, so the request is ambiguous.
pub fn parse_json(body: &[u8]) -> Result<Value, TranscodeError> {
    serde_json::from_slice::<Strict>(body)
        .map(|strict| strict.0)
        .map_err(|e| TranscodeError::invalid(format!("malformed JSON body: {e}")))
}

/// A JSON value whose objects name each key once.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice"
                )));
            }
        }
        Ok(Value::Object(object))
    }
}

fn fields_last(fields: &[FieldDescriptor]) -> Result<&FieldDescriptor, TranscodeError> {
    fields
        .last()
        .ok_or_else(|| TranscodeError::internal("a path variable has no field"))
}

fn bind_query(
    route: &Route,
    input: &MessageDescriptor,
    root: &mut Map<String, Value>,
    query: &str,
    options: &JsonOptions,
) -> Result<(), TranscodeError> {
    for (key, value) in form_urlencoded(query)? {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        let fields = match resolve_field_path(input, &path) {
            Ok(fields) => fields,
            Err(reason) if options.deny_unknown_fields => {
                return Err(TranscodeError::invalid_field(
                    &key,
                    "UNKNOWN_FIELD",
                    format!("unknown query parameter {key:?}: {reason}"),
                ));
            }
            Err(_) => continue,
        };
        let top = &fields[0];
        let bound_by_body = match &route.body {
            BodyBinding::Whole => true,
            BodyBinding::Field(field) => field == top,
            BodyBinding::None => false,
        };
        if bound_by_body {
            if options.deny_unknown_fields {
                return Err(TranscodeError::invalid_field(
                    &key,
                    "FIELD_IN_BODY",
                    format!("query parameter {key:?} names a field the request body carries"),
                ));
            }
            continue;
        }
        if route.path_fields.contains(&fields) {
            continue; // The path wins.
        }
        let leaf = fields_last(&fields)?;
        let json = scalar_json(leaf, &value)?;
        set_path(root, &fields, json, leaf.is_list());
    }
    Ok(())
}

/// Writes `value` at `fields` inside `root`, creating nested objects. A
/// key written under either the proto or the JSON name is replaced.
fn set_path(root: &mut Map<String, Value>, fields: &[FieldDescriptor], value: Value, append: bool) {
    let Some((leaf, parents)) = fields.split_last() else {
        return;
    };
    let mut object = root;
    for field in parents {
        let key = existing_key(object, field).unwrap_or_else(|| field.name().to_owned());
        let slot = object
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else {
            return;
        };
        object = next;
    }
    if append {
        let key = existing_key(object, leaf).unwrap_or_else(|| leaf.name().to_owned());
        match object
            .entry(key)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(items) => items.push(value),
            other => *other = Value::Array(vec![value]),
        }
    } else {
        object.remove(leaf.json_name());
        object.insert(leaf.name().to_owned(), value);
    }
}

/// The value at `fields` inside `root`, under either name.
fn get_path<'a>(root: &'a Map<String, Value>, fields: &[FieldDescriptor]) -> Option<&'a Value> {
    let (leaf, parents) = fields.split_last()?;
    let mut object = root;
    for field in parents {
        object = object.get(&existing_key(object, field)?)?.as_object()?;
    }
    object.get(&existing_key(object, leaf)?)
}

/// Whether a JSON value sent in a body says the same as the path's: equal,
/// or the same text once a number or boolean is written as a string.
fn same_scalar(sent: &Value, path: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    sent == path || text(sent).is_some_and(|t| Some(t) == text(path))
}

fn existing_key(object: &Map<String, Value>, field: &FieldDescriptor) -> Option<String> {
    [field.name(), field.json_name()]
        .into_iter()
        .find(|k| object.contains_key(*k))
        .map(str::to_owned)
}

/// The JSON form of a text value for a scalar (or well-known scalar-like)
/// field: booleans become JSON booleans, enum numbers JSON numbers, and
/// everything else a string, which the proto3 JSON mapping accepts for
/// numbers, enums by name, bytes, Timestamp, Duration, FieldMask and the
/// wrappers.
fn scalar_json(field: &FieldDescriptor, text: &str) -> Result<Value, TranscodeError> {
    let bad = |expected: &str| {
        TranscodeError::invalid_field(
            field.name(),
            "INVALID_VALUE",
            format!("{}: {text:?} is not {expected}", field.name()),
        )
    };
    let parse_bool = |text: &str| match text {
        "true" | "True" | "TRUE" | "1" => Some(true),
        "false" | "False" | "FALSE" | "0" => Some(false),
        _ => None,
    };
    match field.kind() {
        Kind::Bool => parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| bad("a boolean")),
        Kind::Enum(_) => Ok(match text.parse::<i64>() {
            Ok(number) => Value::from(number),
            Err(_) => Value::String(text.to_owned()),
        }),
        Kind::Message(message) => match message.full_name() {
            "google.protobuf.BoolValue" => parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| bad("a boolean")),
            "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.FloatValue"
            | "google.protobuf.DoubleValue" => Ok(Value::String(text.to_owned())),
            other => Err(TranscodeError::invalid_field(
                field.name(),
                "INVALID_VALUE",
                format!("{}: a {other} cannot be set from the URL", field.name()),
            )),
        },
        _ => Ok(Value::String(text.to_owned())),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Splits `application/x-www-form-urlencoded` text into decoded pairs.
pub fn form_urlencoded(query: &str) -> Result<Vec<(String, String)>, TranscodeError> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                super::template::percent_decode(&s.replace('+', " "), false).ok_or_else(|| {
                    TranscodeError::invalid(format!("malformed query string near {pair:?}"))
                })
            };
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

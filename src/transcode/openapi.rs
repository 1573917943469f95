//! The OpenAPI 3 document of the REST routes, generated from the same
//! descriptors: paths and parameters from the HttpRules, request and response
//! schemas from the messages (in the configured JSON names), descriptions
//! from the proto comments, and the error schema.

use std::collections::BTreeMap;

use prost_reflect::{
    EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, MethodDescriptor,
};
use serde_json::{Map, Value, json};

use super::TranscodeOptions;
use super::routes::{BodyBinding, Route, RouteMethod, RouteTable};
use super::template::Segment;
use crate::validate::Validator;

/// The error statuses an operation can answer, each with what it stands
/// for: the gRPC codes mapped to it (with the configured overrides) and the
/// layer's own refusals.
fn error_statuses(options: &TranscodeOptions, has_body: bool) -> BTreeMap<u16, String> {
    let mut codes: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for n in 1..=16 {
        let code = tonic::Code::from(n);
        codes
            .entry(options.rest_status(code).as_u16())
            .or_default()
            .push(super::code_name(code));
    }
    let mut out: BTreeMap<u16, String> = codes
        .into_iter()
        .map(|(status, names)| (status, format!("{}.", names.join(", "))))
        .collect();
    let mut own = |status: u16, why: &str| {
        let entry = out.entry(status).or_default();
        if !entry.is_empty() {
            entry.push(' ');
        }
        entry.push_str(why);
    };
    own(
        400,
        "Or a request that does not read as the message (bad JSON, an unknown field, \
         a field that contradicts the path).",
    );
    if has_body {
        own(413, "The body is larger than the layer accepts.");
        own(415, "The body is not JSON.");
    }
    out
}

/// What the document is rendered from besides the routes.
struct Ctx<'a> {
    options: &'a TranscodeOptions,
    rules: &'a Validator,
}

/// The schema name of the error body.
const ERROR_SCHEMA: &str = "ErrorResponse";

/// The OpenAPI 3.0 document of `routes`.
pub fn document(routes: &RouteTable, rules: &Validator, options: &TranscodeOptions) -> Value {
    let ctx = Ctx { options, rules };
    let ctx = &ctx;
    let mut schemas = BTreeMap::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in routes.routes() {
        let RouteMethod::Exact(method) = &route.method else {
            continue; // `custom { kind: "*" }` has no OpenAPI operation.
        };
        let operation = operation(route, ctx, &mut schemas);
        paths
            .entry(openapi_path(route))
            .or_default()
            .insert(method.as_str().to_ascii_lowercase(), operation);
    }
    let mut components = Map::new();
    for (name, schema) in schemas {
        components.insert(name, schema);
    }
    components.insert(
        ERROR_SCHEMA.to_owned(),
        json!({
            "type": "object",
            "description": "An error: the gRPC status code, a message, and typed details \
                            (google.rpc.ErrorInfo, google.rpc.BadRequest, ...).",
            "properties": {
                "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
                "message": {"type": "string", "description": "A developer-facing message."},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"@type": {"type": "string"}},
                        "additionalProperties": true
                    }
                }
            },
            "required": ["code", "message", "details"]
        }),
    );
    json!({
        "openapi": "3.0.3",
        "info": {"title": options.title, "version": options.version},
        "paths": paths,
        "components": {"schemas": components},
    })
}

/// `/v1/{name=shelves/*}:publish` becomes `/v1/{name}:publish`.
fn openapi_path(route: &Route) -> String {
    let template = &route.template;
    let mut path = String::new();
    let mut i = 0;
    while i < template.segments.len() {
        path.push('/');
        if let Some(variable) = template.variables.iter().find(|v| v.start == i) {
            path.push('{');
            path.push_str(&variable.field_path.join("."));
            path.push('}');
            i += variable.len.max(1);
            continue;
        }
        match &template.segments[i] {
            Segment::Literal(text) => path.push_str(text),
            Segment::Any => path.push('*'),
            Segment::Rest => path.push_str("**"),
        }
        i += 1;
    }
    if let Some(verb) = &template.verb {
        path.push(':');
        path.push_str(verb);
    }
    path
}

fn operation(route: &Route, ctx: &Ctx<'_>, schemas: &mut BTreeMap<String, Value>) -> Value {
    let method = &route.grpc;
    let mut parameters = Vec::new();
    for (variable, fields) in route.template.variables.iter().zip(&route.path_fields) {
        if let Some(field) = fields.last() {
            parameters.push(json!({
                "name": variable.field_path.join("."),
                "in": "path",
                "required": true,
                "description": comment_of_field(field),
                "schema": field_schema(field, ctx, schemas),
            }));
        }
    }
    let bound: Vec<&FieldDescriptor> = route.path_fields.iter().filter_map(|f| f.first()).collect();
    match &route.body {
        BodyBinding::Whole => {}
        BodyBinding::Field(body) => {
            query_parameters(
                &method.input(),
                "",
                &bound,
                Some(body),
                ctx,
                schemas,
                &mut parameters,
            );
        }
        BodyBinding::None => {
            query_parameters(
                &method.input(),
                "",
                &bound,
                None,
                ctx,
                schemas,
                &mut parameters,
            );
        }
    }
    let mut op = json!({
        "operationId": format!("{}_{}", method.parent_service().name(), method.name()),
        "tags": [method.parent_service().full_name()],
        "description": comment_of_method(method),
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": response_schema(route, ctx, schemas)}}
            },
            "default": {
                "description": "An error, with the HTTP status mapped from its gRPC code.",
                "content": {"application/json": {"schema": reference(ERROR_SCHEMA)}}
            }
        }
    });
    if method.is_server_streaming() {
        // A stream of messages: Server-Sent Events (each event's data one
        // message) or newline-delimited JSON (each line `{"result": ...}`,
        // or a last `{"error": ...}`).
        let message = response_schema(route, ctx, schemas);
        op["responses"]["200"] = json!({
            "description": "A stream of messages, one per event or line, as they come: \
                Server-Sent Events with `Accept: text/event-stream` (an `error` event ends \
                a failed stream), else newline-delimited JSON.",
            "content": {
                "text/event-stream": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {
                    "type": "object",
                    "properties": {
                        "result": message,
                        "error": reference(ERROR_SCHEMA),
                    },
                }},
            }
        });
    }
    let has_body = !matches!(route.body, BodyBinding::None);
    if let Some(Value::Object(responses)) = op.get_mut("responses") {
        for (status, why) in error_statuses(ctx.options, has_body) {
            responses.insert(
                status.to_string(),
                json!({
                    "description": why,
                    "content": {"application/json": {"schema": reference(ERROR_SCHEMA)}}
                }),
            );
        }
    }
    let body_schema = match &route.body {
        BodyBinding::None => None,
        BodyBinding::Whole if bound.is_empty() => Some(message_ref(&method.input(), ctx, schemas)),
        // The path's fields are not the body's: a body naming one must say
        // the same as the path, so the schema leaves them out.
        BodyBinding::Whole => {
            let full = message_ref(&method.input(), ctx, schemas);
            let name = format!("{}_{}_Body", method.parent_service().name(), method.name());
            let mut schema = full
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .and_then(|n| schemas.get(n))
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            if let Some(Value::Object(properties)) = schema.get_mut("properties") {
                for field in &bound {
                    properties.remove(field.name());
                    properties.remove(field.json_name());
                }
            }
            if let Some(Value::Array(required)) = schema.get_mut("required") {
                required.retain(|r| !bound.iter().any(|f| r == f.name() || r == f.json_name()));
            }
            schemas.insert(name.clone(), schema);
            Some(reference(&name))
        }
        BodyBinding::Field(field) => Some(field_schema(field, ctx, schemas)),
    };
    if let Some(schema) = body_schema {
        // A missing body is the empty message: required only when the
        // message has a field that must be given.
        let required = match &route.body {
            BodyBinding::Field(field) => is_required(field, ctx),
            BodyBinding::Whole | BodyBinding::None => schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .and_then(|name| schemas.get(name))
                .unwrap_or(&schema)
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|required| !required.is_empty()),
        };
        op["requestBody"] = json!({
            "required": required,
            "content": {"application/json": {"schema": schema}}
        });
    }
    op
}

fn response_schema(route: &Route, ctx: &Ctx<'_>, schemas: &mut BTreeMap<String, Value>) -> Value {
    match &route.response_body {
        Some(field) => field_schema(field, ctx, schemas),
        None => message_ref(&route.grpc.output(), ctx, schemas),
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "a recursive walk with its accumulators"
)]
fn query_parameters(
    message: &MessageDescriptor,
    prefix: &str,
    bound: &[&FieldDescriptor],
    body: Option<&FieldDescriptor>,
    ctx: &Ctx<'_>,
    schemas: &mut BTreeMap<String, Value>,
    out: &mut Vec<Value>,
) {
    for field in message.fields() {
        if prefix.is_empty() && (bound.contains(&&field) || body == Some(&field)) {
            continue;
        }
        let name = format!("{prefix}{}", field.name());
        match field.kind() {
            Kind::Message(nested)
                if !field.is_list() && !field.is_map() && !is_scalar_like(&nested) =>
            {
                if prefix.matches('.').count() < 3 {
                    query_parameters(&nested, &format!("{name}."), &[], None, ctx, schemas, out);
                }
            }
            _ if field.is_map() => {}
            _ => out.push(json!({
                "name": name,
                "in": "query",
                "required": prefix.is_empty() && is_required(&field, ctx),
                "description": comment_of_field(&field),
                "schema": field_schema(&field, ctx, schemas),
            })),
        }
    }
}

fn is_scalar_like(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.FloatValue"
            | "google.protobuf.DoubleValue"
    )
}

/// `schema`, admitting `null` too.
fn nullable(schema: Value) -> Value {
    match schema {
        Value::Object(mut object) if !object.contains_key("$ref") => {
            if object.contains_key("oneOf") {
                // `nullable` applies to a `type`; a `oneOf` gets it on one branch
                // (On one branch: `null` must match exactly one.)
                if let Some(Value::Object(branch)) = object
                    .get_mut("oneOf")
                    .and_then(Value::as_array_mut)
                    .and_then(|branches| branches.first_mut())
                {
                    branch.insert("nullable".into(), Value::Bool(true));
                }
            } else {
                object.insert("nullable".into(), Value::Bool(true));
            }
            Value::Object(object)
        }
        Value::Object(object) => json!({"allOf": [Value::Object(object)], "nullable": true}),
        other => other,
    }
}

/// Whether a request must give `field`: its rules refuse its absence.
fn is_required(field: &FieldDescriptor, ctx: &Ctx<'_>) -> bool {
    ctx.rules
        .field_rules(field)
        .is_some_and(crate::validate::FieldRules::is_required)
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn message_ref(
    message: &MessageDescriptor,
    ctx: &Ctx<'_>,
    schemas: &mut BTreeMap<String, Value>,
) -> Value {
    if let Some(schema) = well_known(message) {
        return schema;
    }
    let name = message.full_name().to_owned();
    if !schemas.contains_key(&name) {
        schemas.insert(name.clone(), Value::Null); // Reserve: messages may recurse.
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            let key = if ctx.options.json.use_proto_names {
                field.name().to_owned()
            } else {
                field.json_name().to_owned()
            };
            let required_field = is_required(&field, ctx);
            let mut schema = field_schema(&field, ctx, schemas);
            // proto3 JSON reads `null` as the field's default.
            if !required_field {
                schema = nullable(schema);
            }
            let description = comment_of_field(&field);
            if !description.is_empty()
                && let Value::Object(object) = &mut schema
                && !object.contains_key("$ref")
            {
                object.insert("description".to_owned(), Value::String(description));
            }
            if required_field {
                required.push(Value::String(key.clone()));
            }
            properties.insert(key, schema);
        }
        let mut schema = json!({
            "type": "object",
            "description": comment_at(&message.parent_file(), message.path()),
            "properties": properties,
        });
        if !required.is_empty() {
            schema["required"] = Value::Array(required);
        }
        if ctx.options.json.deny_unknown_fields {
            schema["additionalProperties"] = Value::Bool(false);
        }
        schemas.insert(name.clone(), schema);
    }
    reference(&name)
}

fn well_known(message: &MessageDescriptor) -> Option<Value> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "example": "1.5s"}),
        "google.protobuf.FieldMask" => json!({"type": "string"}),
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array", "items": {}}),
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": {"@type": {"type": "string"}},
            "additionalProperties": true
        }),
        "google.protobuf.BoolValue" => json!({"type": "boolean", "nullable": true}),
        "google.protobuf.StringValue" => json!({"type": "string", "nullable": true}),
        "google.protobuf.BytesValue" => {
            json!({"type": "string", "format": "byte", "nullable": true})
        }
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            json!({"type": "integer", "format": "int32", "nullable": true})
        }
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            json!({"type": "string", "format": "int64", "nullable": true})
        }
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => {
            json!({"type": "number", "nullable": true})
        }
        _ => return None,
    })
}

fn field_schema(
    field: &FieldDescriptor,
    ctx: &Ctx<'_>,
    schemas: &mut BTreeMap<String, Value>,
) -> Value {
    if field.is_map() {
        let value_schema = match field.kind() {
            Kind::Message(entry) => entry
                .get_field_by_name("value")
                .map(|v| field_schema(&v, ctx, schemas))
                .unwrap_or_else(|| json!({})),
            _ => json!({}),
        };
        return json!({"type": "object", "additionalProperties": value_schema});
    }
    // The field's rules (`buf.validate`) and the deployment's limits, as JSON
    // Schema keywords; a list's own (`minItems`) apart from its items'.
    let mut keywords = ctx
        .rules
        .field_rules(field)
        .map(crate::validate::FieldRules::json_schema)
        .unwrap_or_default();
    if let Some(limits) = ctx.options.schema_limits.get(field.full_name()) {
        keywords.extend(limits.clone());
    }
    let (item_keywords, list_keywords) = if field.is_list() {
        let items = match keywords.remove("items") {
            Some(Value::Object(items)) => items,
            _ => Map::new(),
        };
        (items, keywords)
    } else {
        (keywords, Map::new())
    };
    let item = match field.kind() {
        Kind::Message(m) => message_ref(&m, ctx, schemas),
        Kind::Enum(e) => enum_schema(&e),
        kind => scalar_schema(&kind, item_keywords),
    };
    if field.is_list() {
        let mut list = json!({"type": "array", "items": item});
        if let Value::Object(object) = &mut list {
            object.extend(list_keywords);
        }
        list
    } else {
        item
    }
}

/// The schema of a scalar in the proto3 JSON mapping, narrowed by
/// `keywords`. Integers carry their type's range; 64-bit integers are
/// written as strings and read as strings or numbers, so their schema
/// admits both (`oneOf`), the range on the number and digits on the string.
fn scalar_schema(kind: &Kind, mut keywords: Map<String, Value>) -> Value {
    let range = |min: i128, max: i128| -> (Value, Value) {
        let value = |n: i128| {
            i64::try_from(n)
                .map(Value::from)
                .or_else(|_| u64::try_from(n).map(Value::from))
                .unwrap_or(Value::Null)
        };
        (value(min), value(max))
    };
    let integer = |format: &str, min: i128, max: i128, keywords: &mut Map<String, Value>| {
        let (min, max) = range(min, max);
        let mut schema = Map::new();
        schema.insert("type".into(), json!("integer"));
        schema.insert("format".into(), json!(format));
        schema.insert("minimum".into(), min);
        schema.insert("maximum".into(), max);
        schema.append(keywords);
        schema
    };
    let mut schema = match kind {
        Kind::Double | Kind::Float => {
            let mut schema = Map::new();
            schema.insert("type".into(), json!("number"));
            schema
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => integer(
            "int32",
            i128::from(i32::MIN),
            i128::from(i32::MAX),
            &mut keywords,
        ),
        Kind::Uint32 | Kind::Fixed32 => integer("int64", 0, i128::from(u32::MAX), &mut keywords),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            let unsigned = matches!(kind, Kind::Uint64 | Kind::Fixed64);
            let (min, max) = if unsigned {
                (0, i128::from(u64::MAX))
            } else {
                (i128::from(i64::MIN), i128::from(i64::MAX))
            };
            let number = integer("int64", min, max, &mut keywords);
            let non_negative = unsigned
                || number
                    .get("minimum")
                    .and_then(Value::as_i64)
                    .is_some_and(|n| n >= 0);
            // Up to 18 digits: every such number fits the type.
            let digits = if non_negative {
                "^(?:0|[1-9][0-9]{0,17})$"
            } else {
                "^-?(?:0|[1-9][0-9]{0,17})$"
            };
            let mut schema = Map::new();
            schema.insert(
                "oneOf".into(),
                json!([
                    {"type": "string", "format": "int64", "pattern": digits},
                    Value::Object(number),
                ]),
            );
            return Value::Object(schema);
        }
        Kind::Bool => {
            let mut schema = Map::new();
            schema.insert("type".into(), json!("boolean"));
            schema
        }
        Kind::Bytes => {
            let mut schema = Map::new();
            schema.insert("type".into(), json!("string"));
            schema.insert("format".into(), json!("byte"));
            schema
        }
        Kind::String | Kind::Message(_) | Kind::Enum(_) => {
            let mut schema = Map::new();
            schema.insert("type".into(), json!("string"));
            schema
        }
    };
    schema.append(&mut keywords);
    Value::Object(schema)
}

fn enum_schema(descriptor: &EnumDescriptor) -> Value {
    let names: Vec<String> = descriptor.values().map(|v| v.name().to_owned()).collect();
    json!({
        "type": "string",
        "enum": names,
        "description": comment_at(&descriptor.parent_file(), descriptor.path()),
    })
}

fn comment_of_field(field: &FieldDescriptor) -> String {
    comment_at(&field.parent_file(), field.path())
}

fn comment_of_method(method: &MethodDescriptor) -> String {
    comment_at(&method.parent_file(), method.path())
}

/// The leading comment of the element at `path` in `file`, trimmed.
fn comment_at(file: &FileDescriptor, path: &[i32]) -> String {
    file.file_descriptor_proto()
        .source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|location| location.leading_comments.as_deref())
        .map(|text| {
            text.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

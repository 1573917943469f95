//! How messages are read from and written to JSON (the proto3 JSON mapping,
//! with the service's naming and default-value choices).

use prost_reflect::{DynamicMessage, SerializeOptions};

/// How JSON is read and written.
#[derive(Debug, Clone)]
pub struct JsonOptions {
    /// Write proto field names (`product_id`) rather than lowerCamelCase
    /// (`productId`). Input accepts both either way.
    pub use_proto_names: bool,
    /// Write fields that hold their default value (`"available": false`).
    pub emit_defaults: bool,
    /// Refuse unknown JSON fields and query parameters (INVALID_ARGUMENT);
    /// when false they are ignored.
    pub deny_unknown_fields: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        Self {
            use_proto_names: true,
            emit_defaults: true,
            deny_unknown_fields: true,
        }
    }
}

impl JsonOptions {
    fn serialize_options(&self) -> SerializeOptions {
        SerializeOptions::new()
            .use_proto_field_name(self.use_proto_names)
            .skip_default_fields(!self.emit_defaults)
    }

    /// A message as a JSON value under these options. Whole doubles print as
    /// integers (`3`, not `3.0`), as the other proto3 JSON encoders do.
    pub fn to_json(
        &self,
        message: &DynamicMessage,
    ) -> Result<serde_json::Value, serde_json::Error> {
        let mut json = message
            .serialize_with_options(serde_json::value::Serializer, &self.serialize_options())?;
        integral_doubles_as_integers(&mut json);
        Ok(json)
    }

    /// A message as JSON text, written directly when its type can hold no
    /// floating-point value (`may_hold_floats` false: nothing to tidy), else
    /// via [`Self::to_json`].
    pub fn to_json_bytes(
        &self,
        message: &DynamicMessage,
        may_hold_floats: bool,
    ) -> Result<Vec<u8>, serde_json::Error> {
        if may_hold_floats {
            return serde_json::to_vec(&self.to_json(message)?);
        }
        let mut bytes = Vec::with_capacity(256);
        message.serialize_with_options(
            &mut serde_json::Serializer::new(&mut bytes),
            &self.serialize_options(),
        )?;
        Ok(bytes)
    }
}

/// Whether a message type can carry a float or double anywhere inside it
/// (including google.protobuf.Value, whose numbers are doubles).
pub(crate) fn has_floats(
    message: &prost_reflect::MessageDescriptor,
    seen: &mut Vec<String>,
) -> bool {
    use prost_reflect::Kind;
    if seen.iter().any(|s| s == message.full_name()) {
        return false;
    }
    seen.push(message.full_name().to_owned());
    message.fields().any(|field| match field.kind() {
        Kind::Double | Kind::Float => true,
        Kind::Message(nested) => has_floats(&nested, seen),
        _ => false,
    })
}

fn integral_doubles_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < EXACT
            {
                // Exact: whole and below 2^53.
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_doubles_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_doubles_as_integers),
        _ => {}
    }
}

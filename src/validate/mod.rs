//! Field rules from the contract: the `buf.validate` (protovalidate)
//! annotations of a descriptor pool, read once and enforced on every decoded
//! message, whatever protocol carried it.
//!
//! Generic: it knows descriptors and protovalidate's standard rules, not the
//! messages they are written on. [`Validator::new`] reads every message of a
//! pool; an annotation it does not enforce (a CEL expression, a rule of a
//! kind not listed below) fails there, at start-up, instead of being
//! silently ignored. [`codec::ValidatingCodec`] runs the rules when tonic
//! decodes a request; the OpenAPI document renders the same rules as JSON
//! Schema keywords through [`FieldRules::json_schema`].
//!
//! Enforced, with protovalidate's meaning:
//! - every field: `required`, `ignore: IGNORE_IF_ZERO_VALUE`;
//! - `string`: `min_len`, `max_len`, `pattern` (Rust `regex` syntax, which
//!   reads RE2 patterns), `in`;
//! - `int32`, `int64`, `uint32`, `uint64`: `gt`, `gte`, `lt`, `lte`;
//! - `repeated`: `min_items`, `max_items`, `unique` (scalar items), `items`
//!   (the rules of each item);
//! - message fields: the rules of the nested message, item by item for
//!   repeated ones.
//!
//! A field without presence is checked whatever its value (an empty string
//! breaks `min_len: 1`); a field with presence (`optional`, a message) only
//! when it is set, and `required` asks that it be set.

pub mod codec;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    ReflectMessage as _, Value,
};
use regex::Regex;
use serde_json::{Map, Value as Json, json};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// The extension that carries a field's rules.
const FIELD_RULES: &str = "buf.validate.field";
/// Extensions whose presence means rules this validator does not enforce.
const UNSUPPORTED_EXTENSIONS: &[&str] = &["buf.validate.message", "buf.validate.oneof"];

/// A rule in a descriptor this validator cannot enforce, or cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Where: the full name of the field or message.
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

impl std::error::Error for RuleError {}

/// One field that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field, as on the wire, with the path from the request message:
    /// `quantity`, `items[2].product_id`.
    pub field: String,
    /// The protovalidate rule id: `string.min_len`, `int32.gte`, `required`.
    pub rule: &'static str,
    /// What is wrong, readable, without the field's name.
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// The rules of one field.
#[derive(Debug, Clone, Default)]
pub struct FieldRules {
    required: bool,
    ignore_if_zero: bool,
    kind: KindRules,
}

#[derive(Debug, Clone, Default)]
enum KindRules {
    #[default]
    None,
    String(StringRules),
    Integer(IntegerRules),
    Repeated(RepeatedRules),
}

#[derive(Debug, Clone, Default)]
struct StringRules {
    min_len: Option<u64>,
    max_len: Option<u64>,
    pattern: Option<Pattern>,
    one_of: Vec<String>,
}

#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    regex: Regex,
}

#[derive(Debug, Clone, Default)]
struct IntegerRules {
    rule_prefix: &'static str,
    gt: Option<i128>,
    gte: Option<i128>,
    lt: Option<i128>,
    lte: Option<i128>,
}

#[derive(Debug, Clone, Default)]
struct RepeatedRules {
    min_items: Option<u64>,
    max_items: Option<u64>,
    /// `unique`: no item twice (scalar items).
    unique: bool,
    items: Option<Box<FieldRules>>,
}

/// The rules of one message: its annotated fields, and the message fields
/// whose types have rules of their own.
#[derive(Debug, Clone)]
pub struct MessageRules {
    descriptor: MessageDescriptor,
    fields: Vec<(FieldDescriptor, FieldRules)>,
}

impl MessageRules {
    /// The message these rules are for.
    pub fn descriptor(&self) -> &MessageDescriptor {
        &self.descriptor
    }
}

/// Every message of a pool that has rules (of its own or in a nested
/// message), ready to check messages.
#[derive(Debug, Clone, Default)]
pub struct Validator {
    messages: HashMap<String, Arc<MessageRules>>,
}

impl Validator {
    /// Reads the rules of every message in `pool`.
    ///
    /// # Errors
    /// A rule this validator does not enforce, or a malformed one (a pattern
    /// that does not compile, `min_len` above `max_len`).
    pub fn new(pool: &DescriptorPool) -> Result<Self, RuleError> {
        let Some(extension) = pool.get_extension_by_name(FIELD_RULES) else {
            return Ok(Self::default());
        };
        let unsupported: Vec<ExtensionDescriptor> = UNSUPPORTED_EXTENSIONS
            .iter()
            .filter_map(|name| pool.get_extension_by_name(name))
            .collect();
        let mut own = HashMap::new();
        for message in pool.all_messages() {
            let options = message.options();
            if let Some(ext) = unsupported.iter().find(|e| options.has_extension(e)) {
                return Err(RuleError {
                    at: message.full_name().to_owned(),
                    reason: format!("({}) rules are not enforced here", ext.full_name()),
                });
            }
            let mut fields = Vec::new();
            for field in message.fields() {
                if let Some(ext) = unsupported.iter().find(|e| {
                    field
                        .containing_oneof()
                        .is_some_and(|o| o.options().has_extension(e))
                }) {
                    return Err(RuleError {
                        at: field.full_name().to_owned(),
                        reason: format!("({}) rules are not enforced here", ext.full_name()),
                    });
                }
                if let Some(rules) = FieldRules::of(&field, &extension)? {
                    fields.push((field, rules));
                }
            }
            own.insert(message.full_name().to_owned(), fields);
        }
        // A message has rules when one of its fields has, or a message field's
        // type has (transitively): iterate to the fixed point.
        let mut with_rules: std::collections::HashSet<String> = own
            .iter()
            .filter(|(_, fields)| !fields.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        loop {
            let before = with_rules.len();
            for message in pool.all_messages() {
                if with_rules.contains(message.full_name()) {
                    continue;
                }
                let nested = message.fields().any(|f| match f.kind() {
                    Kind::Message(m) => with_rules.contains(m.full_name()),
                    _ => false,
                });
                if nested {
                    with_rules.insert(message.full_name().to_owned());
                }
            }
            if with_rules.len() == before {
                break;
            }
        }
        let messages = pool
            .all_messages()
            .filter(|m| with_rules.contains(m.full_name()))
            .map(|m| {
                let fields = own.remove(m.full_name()).unwrap_or_default();
                (
                    m.full_name().to_owned(),
                    Arc::new(MessageRules {
                        descriptor: m,
                        fields,
                    }),
                )
            })
            .collect();
        Ok(Self { messages })
    }

    /// The rules of the message named `full_name`, if it has any.
    pub fn rules(&self, full_name: &str) -> Option<&Arc<MessageRules>> {
        self.messages.get(full_name)
    }

    /// The rules of `field` (a field of a message in this validator's pool).
    pub fn field_rules(&self, field: &FieldDescriptor) -> Option<&FieldRules> {
        self.messages
            .get(field.parent_message().full_name())?
            .fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, rules)| rules)
    }

    /// Checks `message` against its rules and those of the messages it holds.
    ///
    /// # Errors
    /// Every field that breaks its rule, in field order.
    pub fn check(&self, message: &DynamicMessage) -> Result<(), Vec<Violation>> {
        let mut violations = Vec::new();
        self.check_into(message, "", &mut violations);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    fn check_into(&self, message: &DynamicMessage, prefix: &str, out: &mut Vec<Violation>) {
        let Some(rules) = self.messages.get(message.descriptor().full_name()) else {
            return;
        };
        for (field, field_rules) in &rules.fields {
            let path = format!("{prefix}{}", field.name());
            field_rules.check(field, message, &path, out);
        }
        // Nested messages with rules of their own.
        for field in rules.descriptor.fields() {
            let Kind::Message(nested) = field.kind() else {
                continue;
            };
            if !self.messages.contains_key(nested.full_name()) || field.is_map() {
                continue;
            }
            if field.is_list() {
                if let Some(items) = message.get_field(&field).as_list() {
                    for (index, item) in items.iter().enumerate() {
                        if let Some(item) = item.as_message() {
                            let prefix = format!("{prefix}{}[{index}].", field.name());
                            self.check_into(item, &prefix, out);
                        }
                    }
                }
            } else if message.has_field(&field)
                && let Some(item) = message.get_field(&field).as_message()
            {
                let prefix = format!("{prefix}{}.", field.name());
                self.check_into(item, &prefix, out);
            }
        }
    }
}

impl FieldRules {
    /// Reads the `(buf.validate.field)` option of `field`.
    fn of(
        field: &FieldDescriptor,
        extension: &ExtensionDescriptor,
    ) -> Result<Option<Self>, RuleError> {
        let options = field.options();
        if !options.has_extension(extension) {
            return Ok(None);
        }
        let Some(rules) = options.get_extension(extension).as_message().cloned() else {
            return Ok(None);
        };
        let at = field.full_name().to_owned();
        Self::read(&rules, field, field.is_list(), &at).map(Some)
    }

    fn read(
        rules: &DynamicMessage,
        field: &FieldDescriptor,
        as_list: bool,
        at: &str,
    ) -> Result<Self, RuleError> {
        let error = |reason: String| RuleError {
            at: at.to_owned(),
            reason,
        };
        let mut out = Self::default();
        for (rule, value) in rules.fields() {
            match rule.name() {
                "required" => out.required = value.as_bool().unwrap_or(false),
                "ignore" => match value.as_enum_number() {
                    Some(0) => {}
                    Some(1) => out.ignore_if_zero = true,
                    _ => {
                        return Err(error(
                            "only `ignore: IGNORE_IF_ZERO_VALUE` is enforced".into(),
                        ));
                    }
                },
                "string" if !as_list && field.kind() == Kind::String => {
                    out.kind = KindRules::String(StringRules::read(value, &error)?);
                }
                name @ ("int32" | "int64" | "uint32" | "uint64" | "sint32" | "sint64")
                    if !as_list && integer_kind(&field.kind()) == Some(name) =>
                {
                    let kind = integer_kind(&field.kind()).unwrap_or("integer");
                    out.kind = KindRules::Integer(IntegerRules::read(kind, value, &error)?);
                }
                "repeated" if as_list => {
                    out.kind = KindRules::Repeated(RepeatedRules::read(value, field, at)?);
                }
                other => {
                    return Err(error(format!(
                        "the rule `{other}` is not enforced here (or does not fit the field's type)"
                    )));
                }
            }
        }
        if out.required && out.ignore_if_zero {
            return Err(error(
                "`required` and `ignore` contradict each other".into(),
            ));
        }
        Ok(out)
    }

    fn check(
        &self,
        field: &FieldDescriptor,
        message: &DynamicMessage,
        path: &str,
        out: &mut Vec<Violation>,
    ) {
        let present = message.has_field(field);
        if field.supports_presence() && !present {
            if self.required {
                out.push(Violation {
                    field: path.to_owned(),
                    rule: "required",
                    reason: "is required".to_owned(),
                });
            }
            return;
        }
        if !field.supports_presence() && !present && !field.is_list() {
            // The zero value: `required` refuses it, `ignore` skips the rules.
            if self.required {
                out.push(Violation {
                    field: path.to_owned(),
                    rule: "required",
                    reason: "is required".to_owned(),
                });
                return;
            }
            if self.ignore_if_zero {
                return;
            }
        }
        let value = message.get_field(field);
        self.check_value(&value, path, out);
    }

    fn check_value(&self, value: &Value, path: &str, out: &mut Vec<Violation>) {
        let mut push = |rule: &'static str, reason: String| {
            out.push(Violation {
                field: path.to_owned(),
                rule,
                reason,
            });
        };
        match &self.kind {
            KindRules::None => {}
            KindRules::String(rules) => {
                if let Some(text) = value.as_str()
                    && let Some((rule, reason)) = rules.check(text)
                {
                    push(rule, reason);
                }
            }
            KindRules::Integer(rules) => {
                if let Some(number) = integer_value(value)
                    && let Some((rule, reason)) = rules.check(number)
                {
                    push(rule, reason);
                }
            }
            KindRules::Repeated(rules) => {
                let items = value.as_list().unwrap_or(&[]);
                if let Some((rule, reason)) = rules.check_len(items.len()) {
                    push(rule, reason);
                }
                if rules.unique
                    && let Some((index, _)) = items
                        .iter()
                        .enumerate()
                        .find(|(index, item)| items[..*index].contains(item))
                {
                    push(
                        "repeated.unique",
                        format!("must not list an item twice; item {index} repeats an earlier one"),
                    );
                }
                if let Some(item_rules) = &rules.items {
                    for (index, item) in items.iter().enumerate() {
                        item_rules.check_value(item, &format!("{path}[{index}]"), out);
                    }
                }
            }
        }
    }

    /// These rules as JSON Schema keywords (OpenAPI 3.0): `minLength`,
    /// `maxLength`, `pattern`, `enum`, `minimum`/`maximum` (with
    /// `exclusiveMinimum`/`exclusiveMaximum`), `minItems`, `maxItems`, and the
    /// items' keywords under `items`. `required` is the parent's business.
    /// A field whose zero value skips the rules (`ignore:
    /// IGNORE_IF_ZERO_VALUE`) gets them as `anyOf` the zero value or them,
    /// since the zero value is accepted whatever they say.
    pub fn json_schema(&self) -> Map<String, Json> {
        let keywords = self.keywords();
        if !self.ignore_if_zero || keywords.is_empty() {
            return keywords;
        }
        let zero = match &self.kind {
            KindRules::String(_) => json!(""),
            KindRules::Integer(_) => json!(0),
            KindRules::Repeated(_) => json!([]),
            KindRules::None => return keywords,
        };
        let mut out = Map::new();
        out.insert(
            "anyOf".into(),
            json!([{"enum": [zero]}, Json::Object(keywords)]),
        );
        out
    }

    /// The rules' own keywords (see [`FieldRules::json_schema`]).
    fn keywords(&self) -> Map<String, Json> {
        let mut out = Map::new();
        match &self.kind {
            KindRules::None => {}
            KindRules::String(rules) => {
                if let Some(n) = rules.min_len {
                    out.insert("minLength".into(), json!(n));
                }
                if let Some(n) = rules.max_len {
                    out.insert("maxLength".into(), json!(n));
                }
                if let Some(pattern) = &rules.pattern {
                    out.insert("pattern".into(), json!(portable_pattern(&pattern.source)));
                }
                if !rules.one_of.is_empty() {
                    out.insert("enum".into(), json!(rules.one_of));
                }
            }
            KindRules::Integer(rules) => {
                let as_json = |n: i128| {
                    i64::try_from(n)
                        .map(Json::from)
                        .or_else(|_| u64::try_from(n).map(Json::from))
                        .unwrap_or(Json::Null)
                };
                if let Some(n) = rules.gte {
                    out.insert("minimum".into(), as_json(n));
                } else if let Some(n) = rules.gt {
                    out.insert("minimum".into(), as_json(n));
                    out.insert("exclusiveMinimum".into(), json!(true));
                }
                if let Some(n) = rules.lte {
                    out.insert("maximum".into(), as_json(n));
                } else if let Some(n) = rules.lt {
                    out.insert("maximum".into(), as_json(n));
                    out.insert("exclusiveMaximum".into(), json!(true));
                }
            }
            KindRules::Repeated(rules) => {
                if let Some(n) = rules.min_items {
                    out.insert("minItems".into(), json!(n));
                }
                if let Some(n) = rules.max_items {
                    out.insert("maxItems".into(), json!(n));
                }
                if rules.unique {
                    out.insert("uniqueItems".into(), json!(true));
                }
                if let Some(items) = &rules.items {
                    out.insert("items".into(), Json::Object(items.json_schema()));
                }
            }
        }
        out
    }

    /// Whether the field must be given (`required`, or a field without
    /// presence whose zero value its rules refuse, such as `min_len: 1`).
    pub fn is_required(&self) -> bool {
        if self.required {
            return true;
        }
        if self.ignore_if_zero {
            return false;
        }
        match &self.kind {
            KindRules::String(rules) => rules.check("").is_some(),
            KindRules::Integer(rules) => rules.check(0).is_some(),
            KindRules::Repeated(rules) => rules.check_len(0).is_some(),
            KindRules::None => false,
        }
    }
}

impl StringRules {
    fn read(value: &Value, error: &dyn Fn(String) -> RuleError) -> Result<Self, RuleError> {
        let mut out = Self::default();
        let Some(rules) = value.as_message() else {
            return Ok(out);
        };
        for (rule, value) in rules.fields() {
            match rule.name() {
                "min_len" => out.min_len = value.as_u64(),
                "max_len" => out.max_len = value.as_u64(),
                "pattern" => {
                    let source = value.as_str().unwrap_or_default().to_owned();
                    let regex = Regex::new(&source).map_err(|e| {
                        error(format!("the pattern {source:?} does not compile: {e}"))
                    })?;
                    out.pattern = Some(Pattern { source, regex });
                }
                "in" => {
                    out.one_of = value
                        .as_list()
                        .unwrap_or(&[])
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect();
                }
                "example" => {}
                other => {
                    return Err(error(format!(
                        "the rule `string.{other}` is not enforced here"
                    )));
                }
            }
        }
        if let (Some(min), Some(max)) = (out.min_len, out.max_len)
            && min > max
        {
            return Err(error(format!("`min_len` {min} is above `max_len` {max}")));
        }
        Ok(out)
    }

    fn check(&self, text: &str) -> Option<(&'static str, String)> {
        let chars = || text.chars().count() as u64;
        if let Some(min) = self.min_len
            && chars() < min
        {
            return Some((
                "string.min_len",
                if min == 1 {
                    "must not be empty".to_owned()
                } else {
                    format!("must be at least {min} characters, got {}", chars())
                },
            ));
        }
        if let Some(max) = self.max_len
            && chars() > max
        {
            return Some((
                "string.max_len",
                format!("must be at most {max} characters, got {}", chars()),
            ));
        }
        if !self.one_of.is_empty() && !self.one_of.iter().any(|v| v == text) {
            let list = self
                .one_of
                .iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Some((
                "string.in",
                if text.is_empty() {
                    format!("is required: one of {list}")
                } else {
                    format!("must be one of {list}, got {text:?}")
                },
            ));
        }
        if let Some(pattern) = &self.pattern
            && !pattern.regex.is_match(text)
        {
            return Some((
                "string.pattern",
                format!("must match the pattern {}{}", pattern.source, why_not(text)),
            ));
        }
        None
    }
}

/// What a string that failed a pattern holds that patterns usually refuse: a
/// control, invisible or direction-changing character (named by code point),
/// or whitespace at either end. Empty when there is nothing to point at.
fn why_not(text: &str) -> String {
    let hidden = text.chars().find(|c| {
        matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::Unassigned
                | GeneralCategory::PrivateUse
                | GeneralCategory::Surrogate
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
    });
    if let Some(c) = hidden {
        return format!(
            "; it holds U+{:04X}, a control, invisible, direction-changing, unassigned or private-use character",
            u32::from(c)
        );
    }
    if text.trim() != text {
        return "; it starts or ends with whitespace".to_owned();
    }
    String::new()
}

impl IntegerRules {
    fn read(
        kind: &'static str,
        value: &Value,
        error: &dyn Fn(String) -> RuleError,
    ) -> Result<Self, RuleError> {
        let mut out = Self {
            rule_prefix: kind,
            ..Self::default()
        };
        let Some(rules) = value.as_message() else {
            return Ok(out);
        };
        for (rule, value) in rules.fields() {
            let number = integer_value(value);
            match rule.name() {
                "gt" => out.gt = number,
                "gte" => out.gte = number,
                "lt" => out.lt = number,
                "lte" => out.lte = number,
                "example" => {}
                other => {
                    return Err(error(format!(
                        "the rule `{kind}.{other}` is not enforced here"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn check(&self, number: i128) -> Option<(&'static str, String)> {
        let rule = |name: &str| -> &'static str {
            match (self.rule_prefix, name) {
                ("int32", "gt") => "int32.gt",
                ("int32", "gte") => "int32.gte",
                ("int32", "lt") => "int32.lt",
                ("int32", "lte") => "int32.lte",
                ("int64", "gt") => "int64.gt",
                ("int64", "gte") => "int64.gte",
                ("int64", "lt") => "int64.lt",
                ("int64", "lte") => "int64.lte",
                (_, "gt") => "integer.gt",
                (_, "gte") => "integer.gte",
                (_, "lt") => "integer.lt",
                _ => "integer.lte",
            }
        };
        if let Some(min) = self.gte
            && number < min
        {
            return Some((rule("gte"), format!("must be at least {min}, got {number}")));
        }
        if let Some(min) = self.gt
            && number <= min
        {
            return Some((rule("gt"), format!("must be more than {min}, got {number}")));
        }
        if let Some(max) = self.lte
            && number > max
        {
            return Some((rule("lte"), format!("must be at most {max}, got {number}")));
        }
        if let Some(max) = self.lt
            && number >= max
        {
            return Some((rule("lt"), format!("must be less than {max}, got {number}")));
        }
        None
    }
}

impl RepeatedRules {
    fn read(value: &Value, field: &FieldDescriptor, at: &str) -> Result<Self, RuleError> {
        let mut out = Self::default();
        let Some(rules) = value.as_message() else {
            return Ok(out);
        };
        for (rule, value) in rules.fields() {
            match rule.name() {
                "min_items" => out.min_items = value.as_u64(),
                "max_items" => out.max_items = value.as_u64(),
                "unique" => {
                    if field.kind().as_message().is_some() {
                        return Err(RuleError {
                            at: at.to_owned(),
                            reason: "`repeated.unique` is enforced for scalar items only".into(),
                        });
                    }
                    out.unique = value.as_bool().unwrap_or(false);
                }
                "items" => {
                    if let Some(items) = value.as_message() {
                        out.items = Some(Box::new(FieldRules::read(
                            items,
                            field,
                            false,
                            &format!("{at}[]"),
                        )?));
                    }
                }
                other => {
                    return Err(RuleError {
                        at: at.to_owned(),
                        reason: format!("the rule `repeated.{other}` is not enforced here"),
                    });
                }
            }
        }
        Ok(out)
    }

    fn check_len(&self, len: usize) -> Option<(&'static str, String)> {
        let len = len as u64;
        let range = match (self.min_items, self.max_items) {
            (Some(min), Some(max)) => format!("{min} to {max} items"),
            (Some(min), None) => format!("at least {min} items"),
            (None, Some(max)) => format!("at most {max} items"),
            (None, None) => return None,
        };
        if self.min_items.is_some_and(|min| len < min) {
            return Some((
                "repeated.min_items",
                format!("must list {range}, got {len}"),
            ));
        }
        if self.max_items.is_some_and(|max| len > max) {
            return Some((
                "repeated.max_items",
                format!("must list {range}, got {len}"),
            ));
        }
        None
    }
}

fn integer_kind(kind: &Kind) -> Option<&'static str> {
    match kind {
        Kind::Int32 => Some("int32"),
        Kind::Int64 => Some("int64"),
        Kind::Uint32 => Some("uint32"),
        Kind::Uint64 => Some("uint64"),
        Kind::Sint32 => Some("sint32"),
        Kind::Sint64 => Some("sint64"),
        _ => None,
    }
}

fn integer_value(value: &Value) -> Option<i128> {
    match value {
        Value::I32(n) => Some(i128::from(*n)),
        Value::I64(n) => Some(i128::from(*n)),
        Value::U32(n) => Some(i128::from(*n)),
        Value::U64(n) => Some(i128::from(*n)),
        _ => None,
    }
}

/// `pattern` with its Unicode property classes (`\p{C}`) spelled out as
/// code point ranges (`\u0000-\u001F`; characters beyond the BMP as
/// themselves), so that JSON Schema tools whose regex engine lacks property
/// classes (ECMA-262 without the `u` flag, Python's `re`) read the same set.
/// The pattern as written when it cannot be parsed.
pub fn portable_pattern(pattern: &str) -> String {
    use regex_syntax::hir::{Class, HirKind, Look};
    fn escape(c: char) -> String {
        let n = u32::from(c);
        if c.is_ascii_alphanumeric() {
            c.to_string()
        } else if n <= 0xFFFF {
            format!("\\u{n:04X}")
        } else {
            // Beyond the BMP no escape reads the same everywhere (`\U` is
            // not ECMA-262, `\u{..}` not Python): the character itself is.
            c.to_string()
        }
    }
    fn write(hir: &regex_syntax::hir::Hir, out: &mut String) -> Option<()> {
        match hir.kind() {
            HirKind::Empty => {}
            HirKind::Literal(literal) => {
                for c in std::str::from_utf8(&literal.0).ok()?.chars() {
                    out.push_str(&escape(c));
                }
            }
            HirKind::Class(Class::Unicode(class)) => {
                // A range of chars may span the surrogates, which are no
                // chars; engines that read UTF-16 would count them in.
                let mut ranges = Vec::new();
                for range in class.iter() {
                    let (start, end) = (range.start(), range.end());
                    if u32::from(start) < 0xD800 && u32::from(end) > 0xDFFF {
                        ranges.push((start, '\u{D7FF}'));
                        ranges.push(('\u{E000}', end));
                    } else {
                        ranges.push((start, end));
                    }
                }
                out.push('[');
                for (start, end) in ranges {
                    out.push_str(&escape(start));
                    if end != start {
                        out.push('-');
                        out.push_str(&escape(end));
                    }
                }
                out.push(']');
            }
            HirKind::Class(Class::Bytes(_)) => return None,
            HirKind::Look(Look::Start) => out.push('^'),
            HirKind::Look(Look::End) => out.push('$'),
            HirKind::Look(_) => return None,
            HirKind::Repetition(rep) => {
                out.push_str("(?:");
                write(&rep.sub, out)?;
                out.push(')');
                match (rep.min, rep.max) {
                    (0, None) => out.push('*'),
                    (1, None) => out.push('+'),
                    (0, Some(1)) => out.push('?'),
                    (min, None) => out.push_str(&format!("{{{min},}}")),
                    (min, Some(max)) if min == max => out.push_str(&format!("{{{min}}}")),
                    (min, Some(max)) => out.push_str(&format!("{{{min},{max}}}")),
                }
                if !rep.greedy {
                    out.push('?');
                }
            }
            HirKind::Capture(capture) => {
                out.push_str("(?:");
                write(&capture.sub, out)?;
                out.push(')');
            }
            HirKind::Concat(parts) => {
                for part in parts {
                    write(part, out)?;
                }
            }
            HirKind::Alternation(parts) => {
                out.push_str("(?:");
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    write(part, out)?;
                }
                out.push(')');
            }
        }
        Some(())
    }
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
        return pattern.to_owned();
    };
    let mut out = String::new();
    match write(&hir, &mut out) {
        Some(()) => out,
        None => pattern.to_owned(),
    }
}

#[cfg(test)]
mod tests;

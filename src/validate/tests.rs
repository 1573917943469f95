//! The interpreter on a small contract compiled here, and the pattern
//! translation.

use prost_reflect::{DescriptorPool, DynamicMessage, Value};

use super::*;

const PROTO: &str = r#"
syntax = "proto3";
package t.v1;
import "buf/validate/validate.proto";
message Item {
  string sku = 1 [(buf.validate.field).string = {min_len: 1, max_len: 3}];
  int32 quantity = 2 [(buf.validate.field).int32 = {gte: 1, lte: 9}];
}
message Order {
  string id = 1 [(buf.validate.field).string.pattern = "^[a-z]+$"];
  repeated Item items = 2 [(buf.validate.field).repeated = {min_items: 1, max_items: 2}];
  string note = 3 [
    (buf.validate.field).ignore = IGNORE_IF_ZERO_VALUE,
    (buf.validate.field).string.min_len = 2
  ];
  optional int64 version = 4 [(buf.validate.field).int64.gte = 0];
  Item gift = 5;
  string kind = 6 [(buf.validate.field).string = {in: ["a", "b"]}];
  repeated string tags = 7 [(buf.validate.field).repeated = {
    unique: true
    items: {string: {max_len: 2}}
  }];
}
message Plain { string anything = 1; }
"#;

fn pool(source: &str) -> DescriptorPool {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("t.proto"), source).expect("write");
    let mut compiler =
        protox::Compiler::new([dir.path(), std::path::Path::new("proto")]).expect("compiler");
    compiler.include_imports(true);
    compiler.open_files(["t.proto"]).expect("compile");
    compiler.descriptor_pool()
}

fn order(pool: &DescriptorPool, json: &str) -> DynamicMessage {
    let descriptor = pool.get_message_by_name("t.v1.Order").expect("Order");
    let mut deserializer = serde_json::Deserializer::from_str(json);
    DynamicMessage::deserialize(descriptor, &mut deserializer).expect("json")
}

fn violations(validator: &Validator, message: &DynamicMessage) -> Vec<String> {
    match validator.check(message) {
        Ok(()) => Vec::new(),
        Err(violations) => violations
            .iter()
            .map(|v| format!("{} {}", v.field, v.rule))
            .collect(),
    }
}

#[test]
fn a_valid_message_passes_and_each_rule_names_its_field() {
    let pool = pool(PROTO);
    let validator = Validator::new(&pool).expect("rules");
    let good = order(
        &pool,
        r#"{"id": "abc", "items": [{"sku": "x", "quantity": 1}], "kind": "a", "tags": ["ab"]}"#,
    );
    assert_eq!(violations(&validator, &good), Vec::<String>::new());

    let bad = order(
        &pool,
        r#"{"id": "ABC", "items": [{"sku": "", "quantity": 10}, {"sku": "wxyz", "quantity": 0}, {"sku": "a", "quantity": 1}],
            "note": "x", "version": "-1", "gift": {"sku": "y"}, "kind": "c", "tags": ["abc"]}"#,
    );
    assert_eq!(
        violations(&validator, &bad),
        [
            "id string.pattern",
            "items repeated.max_items",
            "note string.min_len",
            "version int64.gte",
            "kind string.in",
            "tags[0] string.max_len",
            "items[0].sku string.min_len",
            "items[0].quantity int32.lte",
            "items[1].sku string.max_len",
            "items[1].quantity int32.gte",
            "gift.quantity int32.gte",
        ]
    );
}

#[test]
fn zero_values_break_rules_unless_ignored_and_unset_optionals_are_skipped() {
    let pool = pool(PROTO);
    let validator = Validator::new(&pool).expect("rules");
    let empty = order(&pool, "{}");
    // `id` is "" (no match), items empty, kind "" (not in the list); `note`
    // is ignored when empty, `version` and `gift` are unset.
    assert_eq!(
        violations(&validator, &empty),
        [
            "id string.pattern",
            "items repeated.min_items",
            "kind string.in"
        ]
    );
    let descriptor = pool.get_message_by_name("t.v1.Order").expect("Order");
    let version = descriptor.get_field_by_name("version").expect("version");
    let mut message = order(
        &pool,
        r#"{"id": "a", "items": [{"sku": "a", "quantity": 1}], "kind": "b"}"#,
    );
    message.set_field(&version, Value::I64(0));
    assert_eq!(violations(&validator, &message), Vec::<String>::new());
}

#[test]
fn unique_items_are_checked() {
    let pool = pool(PROTO);
    let validator = Validator::new(&pool).expect("rules");
    let twice = order(
        &pool,
        r#"{"id": "a", "items": [{"sku": "a", "quantity": 1}], "kind": "a", "tags": ["x", "y", "x"]}"#,
    );
    assert_eq!(violations(&validator, &twice), ["tags repeated.unique"]);
}

#[test]
fn messages_without_rules_are_not_looked_at() {
    let pool = pool(PROTO);
    let validator = Validator::new(&pool).expect("rules");
    assert!(validator.rules("t.v1.Plain").is_none());
    assert!(validator.rules("t.v1.Order").is_some());
    assert!(validator.rules("t.v1.Item").is_some());
}

#[test]
fn readable_reasons() {
    let pool = pool(PROTO);
    let validator = Validator::new(&pool).expect("rules");
    let bad = order(
        &pool,
        r#"{"id": "a\u202eb", "items": [{"sku": "abcd", "quantity": 1}], "kind": ""}"#,
    );
    let reasons: Vec<String> = validator
        .check(&bad)
        .expect_err("invalid")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        reasons,
        [
            "id: must match the pattern ^[a-z]+$; it holds U+202E, a control, invisible, \
             direction-changing, unassigned or private-use character",
            "kind: is required: one of \"a\", \"b\"",
            "items[0].sku: must be at most 3 characters, got 4",
        ]
    );
}

#[test]
fn rules_it_cannot_enforce_fail_when_read() {
    for (rules, what) in [
        (
            "string name = 1 [(buf.validate.field).string.email = true];",
            "string.email",
        ),
        (
            "string name = 1 [(buf.validate.field).cel = {id: \"x\", expression: \"true\"}];",
            "cel",
        ),
        (
            "int32 n = 1 [(buf.validate.field).string.min_len = 1];",
            "string",
        ),
        (
            "string name = 1 [(buf.validate.field).string.pattern = \"(\"];",
            "does not compile",
        ),
    ] {
        let source = format!(
            "syntax = \"proto3\"; package t.v1; import \"buf/validate/validate.proto\";\n\
             message M {{ {rules} }}"
        );
        let error = Validator::new(&pool(&source)).expect_err(rules);
        assert!(
            error.to_string().contains(what),
            "{error} should mention {what}"
        );
        assert!(error.at.starts_with("t.v1.M"), "{error}");
    }
}

#[test]
fn json_schema_keywords_follow_the_rules() {
    let pool = pool(PROTO);
    let validator = Validator::new(&pool).expect("rules");
    let descriptor = pool.get_message_by_name("t.v1.Order").expect("Order");
    let schema = |name: &str| {
        let field = descriptor.get_field_by_name(name).expect(name);
        serde_json::Value::Object(validator.field_rules(&field).expect("rules").json_schema())
    };
    assert_eq!(
        schema("items"),
        serde_json::json!({"minItems": 1, "maxItems": 2})
    );
    assert_eq!(schema("kind"), serde_json::json!({"enum": ["a", "b"]}));
    assert_eq!(
        schema("tags"),
        serde_json::json!({"items": {"maxLength": 2}, "uniqueItems": true})
    );
    // Ignored when zero: the zero value is valid whatever the rules say.
    assert_eq!(
        schema("note"),
        serde_json::json!({"anyOf": [{"enum": [""]}, {"minLength": 2}]})
    );
    assert_eq!(schema("version"), serde_json::json!({"minimum": 0}));
    let required = |name: &str| {
        let field = descriptor.get_field_by_name(name).expect(name);
        validator
            .field_rules(&field)
            .is_some_and(FieldRules::is_required)
    };
    assert!(required("id") && required("items") && required("kind"));
    assert!(!required("note") && !required("version") && !required("tags"));
}

#[test]
fn portable_patterns_spell_out_property_classes() {
    let pattern = r"^[^\p{Cc}\p{Cf}\p{Z}](?:[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*[^\p{Cc}\p{Cf}\p{Z}])?$";
    let portable = portable_pattern(pattern);
    assert!(!portable.contains("\\p"), "{portable}");
    let original = Regex::new(pattern).expect("original");
    let translated = Regex::new(&portable).expect("translated");
    // The same set, code point by code point, at either end and inside.
    for c in (0..=0x10_FFFF_u32).filter_map(char::from_u32) {
        for text in [format!("{c}"), format!("a{c}b")] {
            assert_eq!(
                original.is_match(&text),
                translated.is_match(&text),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }
    assert_eq!(
        portable_pattern("^(?:[sS][eE][tT]|[aA][dD][dD])$"),
        "^(?:[Ss][Ee][Tt]|[Aa][Dd][Dd])$"
    );
}

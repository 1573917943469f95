//! HttpRule path templates: parsing, matching and percent-decoding, as
//! `google/api/http.proto` specifies them.
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! `{var}` means `{var=*}`. `**` matches zero or more segments and may only
//! end the path. A variable of exactly one segment is fully percent-decoded;
//! a multi-segment variable is decoded except `%2F`, which stays as it is.

use std::fmt;

/// One segment of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal this text (compared after percent-decoding the request).
    Literal(String),
    /// `*`: any one segment.
    Any,
    /// `**`: any number of segments, only at the end.
    Rest,
}

/// A variable: the field it sets and the segments it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The request field path, such as `["shelf", "name"]`.
    pub field_path: Vec<String>,
    /// Index of the first segment the variable covers.
    pub start: usize,
    /// Number of template segments it covers.
    pub len: usize,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// The segments, variables flattened into them.
    pub segments: Vec<Segment>,
    /// The variables, in order.
    pub variables: Vec<Variable>,
    /// The custom verb after `:`, if any.
    pub verb: Option<String>,
    /// The template as written.
    pub source: String,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template {template:?}: {reason}")]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong.
    pub reason: String,
}

impl PathTemplate {
    /// Parses a template such as `/v1/{name=shelves/*}/books:publish`.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let error = |reason: &str| TemplateError {
            template: template.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| error("must start with '/'"))?;
        // The verb is what follows the last ':' outside braces.
        let mut depth = 0i32;
        let mut verb_at = None;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        let (path, verb) = match verb_at {
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_owned())),
            None => (rest, None),
        };
        if verb
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.contains('/'))
        {
            return Err(error("the verb must be a literal after the last ':'"));
        }

        let mut segments = Vec::new();
        let mut variables = Vec::new();
        let mut chars = path;
        while !chars.is_empty() {
            if let Some(inner) = chars.strip_prefix('{') {
                let end = inner.find('}').ok_or_else(|| error("unclosed '{'"))?;
                let body = &inner[..end];
                if body.contains('{') {
                    return Err(error("variables may not nest"));
                }
                let (field, pattern) = match body.split_once('=') {
                    Some((field, pattern)) => (field, pattern),
                    None => (body, "*"),
                };
                let field_path: Vec<String> = field.split('.').map(str::to_owned).collect();
                if field_path.iter().any(|p| !is_ident(p)) {
                    return Err(error("a variable needs a field path such as {a.b}"));
                }
                let start = segments.len();
                for part in pattern.split('/') {
                    segments.push(parse_plain_segment(part).ok_or_else(|| {
                        error("a variable's pattern holds literals, '*' and '**'")
                    })?);
                }
                variables.push(Variable {
                    field_path,
                    start,
                    len: segments.len() - start,
                });
                chars = &inner[end + 1..];
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                let part = &chars[..end];
                if part.contains('{') || part.contains('}') {
                    return Err(error("a variable must span whole segments"));
                }
                segments.push(parse_plain_segment(part).ok_or_else(|| error("empty segment"))?);
                chars = &chars[end..];
            }
            match chars.strip_prefix('/') {
                Some("") => return Err(error("trailing '/'")),
                Some(next) => chars = next,
                None if chars.is_empty() => {}
                None => return Err(error("a variable must span whole segments")),
            }
        }
        if segments.is_empty() {
            return Err(error("needs at least one segment"));
        }
        if let Some(i) = segments.iter().position(|s| *s == Segment::Rest)
            && i + 1 != segments.len()
        {
            return Err(error("'**' may only be the last segment"));
        }
        let mut seen = Vec::new();
        for v in &variables {
            if seen.contains(&&v.field_path) {
                return Err(error("a field is bound twice"));
            }
            seen.push(&v.field_path);
        }
        Ok(Self {
            segments,
            variables,
            verb,
            source: template.to_owned(),
        })
    }

    /// Whether the segments of `rest` (the path less its leading `/` and
    /// verb) fit the template's: a check that allocates nothing, after
    /// which [`Self::matches`] decodes the values.
    fn may_match(&self, rest: &str) -> bool {
        let mut parts = (!rest.is_empty())
            .then(|| rest.split('/'))
            .into_iter()
            .flatten();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => {
                    let Some(part) = parts.next() else {
                        return false;
                    };
                    let equal = if part.contains('%') {
                        percent_decode(part, false).is_some_and(|p| p == *text)
                    } else {
                        part == text
                    };
                    if !equal {
                        return false;
                    }
                }
                Segment::Any => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Rest => {
                    parts.by_ref().for_each(drop);
                }
            }
        }
        parts.next().is_none()
    }

    /// Matches a request path (as sent: percent-encoded, no query). Returns
    /// the variables' decoded values in template order.
    pub fn matches(&self, path: &str) -> Option<Vec<String>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        // Most templates tried do not match: refuse those without allocating.
        if !self.may_match(rest) {
            return None;
        }
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        // Where each template segment's match starts in `parts`.
        let mut starts = Vec::with_capacity(self.segments.len() + 1);
        let mut i = 0;
        for segment in &self.segments {
            starts.push(i);
            match segment {
                Segment::Literal(text) => {
                    let part = parts.get(i)?;
                    let equal = if part.contains('%') {
                        percent_decode(part, false)? == *text
                    } else {
                        *part == text
                    };
                    if !equal {
                        return None;
                    }
                    i += 1;
                }
                Segment::Any => {
                    if parts.get(i)?.is_empty() {
                        return None;
                    }
                    i += 1;
                }
                Segment::Rest => i = parts.len(),
            }
        }
        starts.push(i);
        if i != parts.len() {
            return None;
        }
        let mut values = Vec::with_capacity(self.variables.len());
        for variable in &self.variables {
            let from = starts[variable.start];
            let to = starts[variable.start + variable.len];
            let single = variable.len == 1 && self.segments[variable.start] != Segment::Rest;
            let raw = parts[from..to].join("/");
            values.push(percent_decode(&raw, !single)?);
        }
        Some(values)
    }

    /// The template's shape for conflict detection: variables erased, so two
    /// templates with the same shape match the same paths.
    pub fn shape(&self) -> String {
        let mut shape = String::new();
        for segment in &self.segments {
            shape.push('/');
            match segment {
                Segment::Literal(text) => shape.push_str(text),
                Segment::Any => shape.push('*'),
                Segment::Rest => shape.push_str("**"),
            }
        }
        if let Some(verb) = &self.verb {
            shape.push(':');
            shape.push_str(verb);
        }
        shape
    }

    /// Orders templates so the most specific is tried first: at the first
    /// differing segment a literal beats `*`, which beats `**`; then the
    /// longer template, then one with a verb.
    pub fn specificity_cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn rank(segment: Option<&Segment>) -> u8 {
            match segment {
                Some(Segment::Literal(_)) => 3,
                Some(Segment::Any) => 2,
                Some(Segment::Rest) => 1,
                None => 0,
            }
        }
        let len = self.segments.len().max(other.segments.len());
        for i in 0..len {
            let (a, b) = (rank(self.segments.get(i)), rank(other.segments.get(i)));
            if a != b {
                return b.cmp(&a);
            }
        }
        other.verb.is_some().cmp(&self.verb.is_some())
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_plain_segment(part: &str) -> Option<Segment> {
    match part {
        "" => None,
        "*" => Some(Segment::Any),
        "**" => Some(Segment::Rest),
        literal if literal.contains(['{', '}', '*', '=']) => None,
        literal => Some(Segment::Literal(literal.to_owned())),
    }
}

/// Percent-decodes `input`. With `keep_slash`, `%2F`/`%2f` stay encoded (the
/// rule for multi-segment variables). `None` when an escape is malformed or
/// the result is not UTF-8.
pub fn percent_decode(input: &str, keep_slash: bool) -> Option<String> {
    if !input.contains('%') {
        return Some(input.to_owned());
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if keep_slash && value == b'/' {
                out.extend_from_slice(&bytes[i..i + 3]);
            } else {
                out.push(value);
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(template: &str) -> PathTemplate {
        PathTemplate::parse(template).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A template, its segments, its variables as (field path, start, len), its verb.
    type GrammarCase = (
        &'static str,
        Vec<Segment>,
        Vec<(&'static str, usize, usize)>,
        Option<&'static str>,
    );

    #[test]
    fn parses_the_grammar() {
        let cases: &[GrammarCase] = &[
            (
                "/api/v1/inventory/{product_id}",
                vec![
                    Segment::Literal("api".into()),
                    Segment::Literal("v1".into()),
                    Segment::Literal("inventory".into()),
                    Segment::Any,
                ],
                vec![("product_id", 3, 1)],
                None,
            ),
            (
                "/v1/{name=shelves/*/books/*}",
                vec![
                    Segment::Literal("v1".into()),
                    Segment::Literal("shelves".into()),
                    Segment::Any,
                    Segment::Literal("books".into()),
                    Segment::Any,
                ],
                vec![("name", 1, 4)],
                None,
            ),
            (
                "/v1/files/{path=**}",
                vec![
                    Segment::Literal("v1".into()),
                    Segment::Literal("files".into()),
                    Segment::Rest,
                ],
                vec![("path", 2, 1)],
                None,
            ),
            (
                "/v1/{book.shelf.name}/*:publish",
                vec![Segment::Literal("v1".into()), Segment::Any, Segment::Any],
                vec![("book.shelf.name", 1, 1)],
                Some("publish"),
            ),
            (
                "/v1/**",
                vec![Segment::Literal("v1".into()), Segment::Rest],
                vec![],
                None,
            ),
        ];
        for (source, segments, variables, verb) in cases {
            let parsed = t(source);
            assert_eq!(&parsed.segments, segments, "{source}");
            let vars: Vec<(String, usize, usize)> = parsed
                .variables
                .iter()
                .map(|v| (v.field_path.join("."), v.start, v.len))
                .collect();
            let expected: Vec<(String, usize, usize)> = variables
                .iter()
                .map(|(f, s, l)| ((*f).to_owned(), *s, *l))
                .collect();
            assert_eq!(vars, expected, "{source}");
            assert_eq!(parsed.verb.as_deref(), *verb, "{source}");
        }
    }

    #[test]
    fn rejects_malformed_templates() {
        for bad in [
            "v1/x",
            "/",
            "/v1//x",
            "/v1/x/",
            "/v1/{id",
            "/v1/{a{b}}",
            "/v1/x{id}",
            "/v1/{1id}",
            "/v1/**/x",
            "/v1/{id}/{id}",
            "/v1/x:",
            "/v1/{name=**}/tail",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn matches_and_extracts_variables() {
        let cases: &[(&str, &str, Option<Vec<&str>>)] = &[
            (
                "/api/v1/inventory/{product_id}",
                "/api/v1/inventory/product-456",
                Some(vec!["product-456"]),
            ),
            (
                "/api/v1/inventory/{product_id}",
                "/api/v1/inventory/a%20b",
                Some(vec!["a b"]),
            ),
            (
                "/api/v1/inventory/{product_id}",
                "/api/v1/inventory/a%2Fb",
                Some(vec!["a/b"]),
            ),
            (
                "/api/v1/inventory/{product_id}",
                "/api/v1/inventory/a/b",
                None,
            ),
            ("/api/v1/inventory/{product_id}", "/api/v1/inventory", None),
            ("/api/v1/inventory/{product_id}", "/api/v1/inventory/", None),
            (
                "/api/v1/inventory/{product_id}/history",
                "/api/v1/inventory/p/history",
                Some(vec!["p"]),
            ),
            (
                "/v1/{name=shelves/*}",
                "/v1/shelves/s1",
                Some(vec!["shelves/s1"]),
            ),
            ("/v1/{name=shelves/*}", "/v1/books/s1", None),
            (
                "/v1/files/{path=**}",
                "/v1/files/a/b%2Fc/d%20e",
                Some(vec!["a/b%2Fc/d e"]),
            ),
            ("/v1/files/{path=**}", "/v1/files", Some(vec![""])),
            ("/v1/{id}:archive", "/v1/42:archive", Some(vec!["42"])),
            ("/v1/{id}:archive", "/v1/42", None),
            ("/v1/{id}:archive", "/v1/42:restore", None),
            ("/v1/{id}", "/v1/42:archive", Some(vec!["42:archive"])),
            ("/v1/{a}/{b.c}", "/v1/x/y", Some(vec!["x", "y"])),
            ("/v1/x%41", "/v1/x%2541", Some(vec![])),
            ("/v1/{id}", "/v1/%zz", None),
        ];
        for (template, path, expected) in cases {
            let expected: Option<Vec<String>> = expected
                .as_ref()
                .map(|v| v.iter().map(|s| (*s).to_owned()).collect());
            assert_eq!(t(template).matches(path), expected, "{template} vs {path}");
        }
    }

    #[test]
    fn percent_decoding_follows_the_single_and_multi_segment_rules() {
        assert_eq!(
            percent_decode("a%2Fb%2fc%20d", false).as_deref(),
            Some("a/b/c d")
        );
        assert_eq!(
            percent_decode("a%2Fb%2fc%20d", true).as_deref(),
            Some("a%2Fb%2fc d")
        );
        assert_eq!(
            percent_decode("%E4%BA%A7%E5%93%81", false).as_deref(),
            Some("产品")
        );
        assert_eq!(percent_decode("100%", false), None);
        assert_eq!(percent_decode("%FF", false), None);
        assert_eq!(
            percent_decode("plain+text", false).as_deref(),
            Some("plain+text")
        );
    }

    #[test]
    fn shapes_erase_variables_and_specificity_prefers_literals() {
        assert_eq!(t("/v1/{id}").shape(), t("/v1/{name}").shape());
        assert_ne!(t("/v1/{id}").shape(), t("/v1/{id}:archive").shape());
        let mut templates = [
            t("/v1/**"),
            t("/v1/{id}"),
            t("/v1/reserve"),
            t("/v1/{id}/history"),
        ];
        templates.sort_by(PathTemplate::specificity_cmp);
        let order: Vec<&str> = templates.iter().map(|t| t.source.as_str()).collect();
        assert_eq!(
            order,
            ["/v1/reserve", "/v1/{id}/history", "/v1/{id}", "/v1/**"]
        );
    }
}

//! The route table: every `google.api.http` rule (with its
//! `additional_bindings`) of every service in a descriptor pool, checked once
//! at start and matched per request.

use http::Method;
use prost::Message as _;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MethodDescriptor, Value};

use super::google_api::{HttpRule, http_rule::Pattern};
use super::template::PathTemplate;

/// Which HTTP methods a route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMethod {
    /// One method.
    Exact(Method),
    /// `custom { kind: "*" }`: any method.
    Any,
}

impl RouteMethod {
    fn accepts(&self, method: &Method) -> bool {
        match self {
            Self::Exact(m) => m == method,
            Self::Any => true,
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Exact(m) => m.as_str(),
            Self::Any => "*",
        }
    }
}

/// Where the HTTP body goes in the request message.
#[derive(Debug, Clone)]
pub enum BodyBinding {
    /// No body: every field not in the path comes from the query string.
    None,
    /// `body: "*"`: the body is the request message (less path fields).
    Whole,
    /// `body: "field"`: the body is this field; the rest from the query.
    Field(FieldDescriptor),
}

/// One HTTP binding of one method.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method(s).
    pub method: RouteMethod,
    /// The path template.
    pub template: PathTemplate,
    /// Resolved fields of the template's variables, in order.
    pub path_fields: Vec<Vec<FieldDescriptor>>,
    /// Where the body goes.
    pub body: BodyBinding,
    /// The response field sent as the body, if not the whole response.
    pub response_body: Option<FieldDescriptor>,
    /// Whether the response type can hold a float anywhere (its JSON then
    /// needs tidying; see `JsonOptions::to_json_bytes`).
    pub output_has_floats: bool,
    /// The gRPC method.
    pub grpc: MethodDescriptor,
    /// Its gRPC path, `/package.Service/Method`.
    pub grpc_path: String,
}

/// A rule the table refuses, named so the operator can find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The rule itself is malformed.
    #[error("{method}: {reason}")]
    Invalid {
        /// The gRPC method carrying the rule.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// Two rules would answer the same requests.
    #[error("{first} and {second} both bind {http_method} {shape}")]
    Conflict {
        /// One method.
        first: String,
        /// The other.
        second: String,
        /// The HTTP method both use.
        http_method: String,
        /// The path shape both match.
        shape: String,
    },
}

/// The result of looking a request up.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A route matched; the path variables' values are in template order.
    Found(&'a Route, Vec<String>),
    /// Some route matches the path, but not with this HTTP method.
    WrongMethod(Vec<String>),
    /// No route matches the path.
    NotFound,
}

/// Every HTTP route of a descriptor pool, most specific first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Reads the `google.api.http` option of every method in `pool`.
    pub fn from_pool(pool: &DescriptorPool) -> Result<Self, RouteError> {
        let mut routes = Vec::new();
        let Some(extension) = pool.get_extension_by_name("google.api.http") else {
            return Ok(Self { routes });
        };
        for service in pool.services() {
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                    continue;
                };
                let rule = HttpRule::decode(rule.encode_to_vec().as_slice()).map_err(|e| {
                    RouteError::Invalid {
                        method: method.full_name().to_owned(),
                        reason: format!("unreadable google.api.http option: {e}"),
                    }
                })?;
                let invalid = |reason: String| RouteError::Invalid {
                    method: method.full_name().to_owned(),
                    reason,
                };
                if method.is_client_streaming() {
                    return Err(invalid(
                        "client streaming methods cannot be transcoded to REST".to_owned(),
                    ));
                }
                for binding in std::iter::once(&rule).chain(rule.additional_bindings.iter()) {
                    if !std::ptr::eq(binding, &rule) && !binding.additional_bindings.is_empty() {
                        return Err(invalid("additional_bindings may not nest".to_owned()));
                    }
                    routes.push(Route::from_rule(&method, binding).map_err(invalid)?);
                }
            }
        }
        let mut table = Self { routes };
        table.check_conflicts()?;
        table
            .routes
            .sort_by(|a, b| a.template.specificity_cmp(&b.template));
        Ok(table)
    }

    fn check_conflicts(&self) -> Result<(), RouteError> {
        for (i, a) in self.routes.iter().enumerate() {
            for b in &self.routes[i + 1..] {
                let same_method = match (&a.method, &b.method) {
                    (RouteMethod::Exact(x), RouteMethod::Exact(y)) => x == y,
                    _ => true,
                };
                if same_method && a.template.shape() == b.template.shape() {
                    return Err(RouteError::Conflict {
                        first: format!("{} ({})", a.grpc.full_name(), a.template),
                        second: format!("{} ({})", b.grpc.full_name(), b.template),
                        http_method: a.method.name().to_owned(),
                        shape: a.template.shape(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for `method` and `path` (percent-encoded, no query).
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        // Routes of the request's method first: the usual request matches
        // one template, and the others only need their method compared.
        for route in self.routes.iter().filter(|r| r.method.accepts(method)) {
            if let Some(values) = route.template.matches(path) {
                return Lookup::Found(route, values);
            }
        }
        let mut allowed = Vec::new();
        for route in &self.routes {
            if route.template.matches(path).is_some() {
                let name = route.method.name().to_owned();
                if !allowed.contains(&name) {
                    allowed.push(name);
                }
            }
        }
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::WrongMethod(allowed)
        }
    }
}

impl Route {
    fn from_rule(method: &MethodDescriptor, rule: &HttpRule) -> Result<Self, String> {
        let (http_method, path) = match &rule.pattern {
            Some(Pattern::Get(p)) => (RouteMethod::Exact(Method::GET), p),
            Some(Pattern::Put(p)) => (RouteMethod::Exact(Method::PUT), p),
            Some(Pattern::Post(p)) => (RouteMethod::Exact(Method::POST), p),
            Some(Pattern::Delete(p)) => (RouteMethod::Exact(Method::DELETE), p),
            Some(Pattern::Patch(p)) => (RouteMethod::Exact(Method::PATCH), p),
            Some(Pattern::Custom(custom)) if custom.kind == "*" => (RouteMethod::Any, &custom.path),
            Some(Pattern::Custom(custom)) => (
                RouteMethod::Exact(Method::from_bytes(custom.kind.as_bytes()).map_err(|_| {
                    format!("custom method {:?} is not an HTTP method", custom.kind)
                })?),
                &custom.path,
            ),
            None => return Err("the rule has no HTTP method and path".to_owned()),
        };
        let template = PathTemplate::parse(path).map_err(|e| e.to_string())?;
        let input = method.input();
        let path_fields = template
            .variables
            .iter()
            .map(|v| {
                let fields = resolve_field_path(&input, &v.field_path)?;
                let last = fields.last().ok_or("empty field path")?;
                if last.is_list() || last.is_map() || matches!(last.kind(), Kind::Message(_)) {
                    return Err(format!(
                        "path variable {{{}}} must name a singular scalar field",
                        v.field_path.join(".")
                    ));
                }
                Ok(fields)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let body = match rule.body.as_str() {
            "" => BodyBinding::None,
            "*" => BodyBinding::Whole,
            name => BodyBinding::Field(input.get_field_by_name(name).ok_or_else(|| {
                format!(
                    "body field {name:?} is not a field of {}",
                    input.full_name()
                )
            })?),
        };
        let is_get = matches!(&http_method, RouteMethod::Exact(m) if m == Method::GET);
        if is_get && !matches!(body, BodyBinding::None) {
            return Err("a GET rule cannot take a body".to_owned());
        }
        let response_body = match rule.response_body.as_str() {
            "" => None,
            name => Some(method.output().get_field_by_name(name).ok_or_else(|| {
                format!(
                    "response_body field {name:?} is not a field of {}",
                    method.output().full_name()
                )
            })?),
        };
        Ok(Self {
            method: http_method,
            template,
            path_fields,
            body,
            response_body,
            output_has_floats: super::has_floats(&method.output(), &mut Vec::new()),
            grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
            grpc: method.clone(),
        })
    }
}

/// Resolves `a.b.c` against `message`: every part but the last must be a
/// singular message field.
pub fn resolve_field_path(
    message: &prost_reflect::MessageDescriptor,
    path: &[String],
) -> Result<Vec<FieldDescriptor>, String> {
    let mut current = message.clone();
    let mut fields = Vec::with_capacity(path.len());
    for (i, part) in path.iter().enumerate() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))
            .ok_or_else(|| format!("{:?} is not a field of {}", part, current.full_name()))?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(next) if !field.is_list() && !field.is_map() => current = next,
                _ => {
                    return Err(format!(
                        "{part:?} in {} is not a message field",
                        path.join(".")
                    ));
                }
            }
        }
        fields.push(field);
    }
    Ok(fields)
}

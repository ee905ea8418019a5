//! Turning an HTTP request line into a typed request: which route, which
//! resource, which verb, which options. Pure functions, unit-tested without
//! a socket.

use http::Method;
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::table::IncludeObject;

/// What a path addresses.
#[derive(Debug, PartialEq)]
pub enum Route {
    Version,
    /// The cluster CA, for joining agents to check against their token.
    CaCerts,
    /// A joining agent's node credentials (POST, with the join token).
    NodeCredentials,
    Health(String),
    Metrics,
    OpenApiIndex,
    OpenApiDocument(String),
    OpenApiV2,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    ResourceList {
        group: String,
        version: String,
    },
    Resource(Target),
    NotFound,
}

/// A resource path: `/api/v1/namespaces/ns/pods/name/status`.
#[derive(Debug)]
pub struct Target {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.resource, other.resource)
            && self.namespace == other.namespace
            && self.name == other.name
            && self.subresource == other.subresource
    }
}

/// The named checks under `/healthz`, `/livez` and `/readyz`.
const HEALTH_CHECKS: &[&str] = &["ping", "log", "etcd"];

/// Parses a URL path (without query). A trailing slash after a collection
/// addresses an item with an empty name (go-restful matches `{name}` to the
/// empty segment), which the handler refuses; empty segments elsewhere match
/// nothing.
pub fn route(path: &str) -> Route {
    let Some(rest) = path.strip_prefix('/') else {
        return Route::NotFound;
    };
    let (rest, trailing_slash) = match rest.strip_suffix('/') {
        Some(rest) => (rest, true),
        None => (rest, false),
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) && !rest.is_empty() {
        return Route::NotFound;
    }
    match segments.as_slice() {
        [""] => Route::NotFound,
        ["version"] => Route::Version,
        ["cacerts"] => Route::CaCerts,
        ["v1-skiff", "node-credentials"] => Route::NodeCredentials,
        [probe @ ("healthz" | "livez" | "readyz")] => Route::Health((*probe).to_string()),
        [probe @ ("healthz" | "livez" | "readyz"), check]
            if HEALTH_CHECKS.contains(check) || (*probe == "readyz" && *check == "shutdown") =>
        {
            Route::Health(format!("{probe}/{check}"))
        }
        [probe @ ("healthz" | "livez" | "readyz"), "poststarthook", _hook] => {
            Route::Health((*probe).to_string())
        }
        ["metrics"] => Route::Metrics,
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", rest @ ..] => Route::OpenApiDocument(rest.join("/")),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group((*group).to_string()),
        ["api", version] => Route::ResourceList {
            group: String::new(),
            version: (*version).to_string(),
        },
        ["apis", group, version] => Route::ResourceList {
            group: (*group).to_string(),
            version: (*version).to_string(),
        },
        ["api", version, rest @ ..] => target("", version, rest, trailing_slash),
        ["apis", group, version, rest @ ..] => target(group, version, rest, trailing_slash),
        _ => Route::NotFound,
    }
}

fn target(group: &str, version: &str, rest: &[&str], trailing_slash: bool) -> Route {
    if trailing_slash {
        let mut with_empty_name = rest.to_vec();
        with_empty_name.push("");
        return target(group, version, &with_empty_name, false);
    }
    let find = |plural: &str| resources::find(group, version, plural);
    let make = |resource: &'static ResourceInfo,
                namespace: Option<&str>,
                name: Option<&str>,
                sub: Option<&str>| {
        if sub.is_some_and(|s| resource.subresource(s).is_none()) {
            return Route::NotFound;
        }
        Route::Resource(Target {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest {
        // /namespaces/<ns>/<resource>[/<name>[/<sub>]] for namespaced resources.
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            let Some(resource) = find(plural) else {
                return Route::NotFound;
            };
            match tail {
                [] => make(resource, Some(ns), None, None),
                [name] => make(resource, Some(ns), Some(name), None),
                [name, sub] => make(resource, Some(ns), Some(name), Some(sub)),
                _ => Route::NotFound,
            }
        }
        [plural, tail @ ..] => {
            let Some(resource) = find(plural) else {
                return Route::NotFound;
            };
            match (tail, resource.namespaced) {
                ([], _) => make(resource, None, None, None),
                ([name], false) => make(resource, None, Some(name), None),
                ([name, sub], false) => make(resource, None, Some(name), Some(sub)),
                _ => Route::NotFound,
            }
        }
        [] => Route::NotFound,
    }
}

/// The verb of a resource request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// GET/POST on a connect subresource (log, exec, attach, portforward).
    Connect,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
            Self::Connect => "connect",
        }
    }
}

/// Decides the verb; `None` if the method is not allowed on that path.
pub fn verb(method: &Method, target: &Target, query: &Query) -> Option<Verb> {
    let connect = matches!(
        target.subresource.as_deref(),
        Some("log" | "exec" | "attach" | "portforward")
    );
    match (method.as_str(), target.name.is_some()) {
        _ if connect && (method == Method::GET || method == Method::POST) => Some(Verb::Connect),
        ("GET", false) if query.flag("watch") => Some(Verb::Watch),
        ("GET", false) => Some(Verb::List),
        ("GET", true) => Some(Verb::Get),
        ("POST", false) => Some(Verb::Create),
        ("POST", true) if matches!(target.subresource.as_deref(), Some("binding" | "eviction" | "token")) => {
            Some(Verb::Create)
        }
        ("PUT", true) => Some(Verb::Update),
        ("PATCH", true) => Some(Verb::Patch),
        ("DELETE", true) if target.subresource.is_none() => Some(Verb::Delete),
        ("DELETE", false) => Some(Verb::DeleteCollection),
        _ => None,
    }
}

/// Decoded query parameters (repeats kept, in order).
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `true`/`1` (Go's strconv.ParseBool accepts more; these are what clients send).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("true" | "1" | "True" | "TRUE" | "t" | "T")
        )
    }

    /// A non-negative integer parameter; a malformed one is a 400.
    pub fn number(&self, key: &str) -> Result<Option<i64>, String> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("invalid value for {key}: {v:?}")),
        }
    }
}

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    Table(IncludeObject),
    /// PartialObjectMetadata(List).
    Metadata,
}

/// Content negotiation over the Accept header: the first acceptable entry wins.
pub fn output(accept: Option<&str>, query: &Query) -> Output {
    let Some(accept) = accept else {
        return Output::Json;
    };
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        match (media, param("as"), param("g")) {
            ("application/json", Some("Table"), Some("meta.k8s.io")) => {
                return Output::Table(IncludeObject::parse(query.get("includeObject")));
            }
            (
                "application/json",
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("meta.k8s.io"),
            ) => {
                return Output::Metadata;
            }
            ("application/json" | "*/*" | "application/*", None, _) => return Output::Json,
            ("application/yaml", None, _) => return Output::Yaml,
            _ => {}
        }
    }
    Output::Json
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parts = (String, Option<String>, Option<String>, Option<String>);

    fn target_of(path: &str) -> Option<Parts> {
        match route(path) {
            Route::Resource(t) => Some((
                t.resource.plural.to_string(),
                t.namespace,
                t.name,
                t.subresource,
            )),
            _ => None,
        }
    }

    #[test]
    fn paths_route_to_resources() {
        assert_eq!(
            target_of("/api/v1/namespaces/default/pods/web/status"),
            Some((
                "pods".into(),
                Some("default".into()),
                Some("web".into()),
                Some("status".into())
            ))
        );
        assert_eq!(
            target_of("/api/v1/pods"),
            Some(("pods".into(), None, None, None))
        );
        assert_eq!(
            target_of("/api/v1/namespaces/blue"),
            Some(("namespaces".into(), None, Some("blue".into()), None))
        );
        assert_eq!(
            target_of("/api/v1/namespaces"),
            Some(("namespaces".into(), None, None, None))
        );
        assert_eq!(
            target_of("/api/v1/namespaces/blue/finalize"),
            Some((
                "namespaces".into(),
                None,
                Some("blue".into()),
                Some("finalize".into())
            ))
        );
        assert_eq!(
            target_of("/api/v1/nodes/n1"),
            Some(("nodes".into(), None, Some("n1".into()), None))
        );
        assert_eq!(
            target_of("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"),
            Some((
                "leases".into(),
                Some("kube-node-lease".into()),
                Some("n1".into()),
                None
            ))
        );
        assert_eq!(
            route("/api/v1/namespaces/default/pods/web/nope"),
            Route::NotFound
        );
        assert_eq!(route("/api/v1/widgets"), Route::NotFound);
        assert_eq!(route("/api/v1/pods/web"), Route::NotFound);
        assert_eq!(
            route("/openapi/v3/api/v1"),
            Route::OpenApiDocument("api/v1".into())
        );
        assert_eq!(route("/apis"), Route::Groups);
        // A trailing slash names an empty item, never the collection.
        assert_eq!(
            target_of("/api/v1/namespaces/x/pods/"),
            Some(("pods".into(), Some("x".into()), Some(String::new()), None))
        );
        assert_eq!(route("/api/v1/namespaces/x/pods/web/"), Route::NotFound);
        assert_eq!(route("/api/v1//pods"), Route::NotFound);
        assert_eq!(route("/healthz/x"), Route::NotFound);
        assert_eq!(route("/healthz/ping"), Route::Health("healthz/ping".into()));
        assert_eq!(route("/"), Route::NotFound);
    }

    #[test]
    fn accept_headers_pick_the_representation() {
        let q = Query::default();
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            output(Some(kubectl_get), &q),
            Output::Table(IncludeObject::Metadata)
        );
        assert_eq!(
            output(
                Some("application/vnd.kubernetes.protobuf,application/json"),
                &q
            ),
            Output::Json
        );
        assert_eq!(output(None, &q), Output::Json);
        assert_eq!(output(Some("application/yaml"), &q), Output::Yaml);
    }

    #[test]
    fn verbs_follow_method_and_path() {
        let Route::Resource(collection) = route("/api/v1/namespaces/d/pods") else {
            return;
        };
        let watch = Query::parse(Some("watch=true&resourceVersion=5"));
        assert_eq!(verb(&Method::GET, &collection, &watch), Some(Verb::Watch));
        assert_eq!(
            verb(&Method::GET, &collection, &Query::default()),
            Some(Verb::List)
        );
        assert_eq!(
            verb(&Method::DELETE, &collection, &Query::default()),
            Some(Verb::DeleteCollection)
        );
        let Route::Resource(exec) = route("/api/v1/namespaces/d/pods/p/exec") else {
            return;
        };
        assert_eq!(
            verb(&Method::POST, &exec, &Query::default()),
            Some(Verb::Connect)
        );
        let q = Query::parse(Some("fieldSelector=metadata.name%3Dweb&limit=500"));
        assert_eq!(q.get("fieldSelector"), Some("metadata.name=web"));
        assert_eq!(q.number("limit"), Ok(Some(500)));
    }
}

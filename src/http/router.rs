//! RabbitMQ 3.10's management API paths: percent-decoded segments (so the default vhost is
//! `%2F`) to a typed `Route`, and the methods each path allows, with cowboy_rest's order of
//! refusals: unknown method 501, method not allowed 405 (with Allow), then the handler's
//! 401/404. The table is checked against every path RabbitMQ 3.10 answered
//! (tests/fixtures/rabbitmq-3.10-http/routes.tsv).
//!
//! An unknown path behaves as RabbitMQ's static-file fallback does: GET/HEAD answer 404 with
//! `{"error":"Object Not Found","reason":"Not Found"}` (400 when a decoded segment holds `/`,
//! `\` or NUL), other methods 405 with `allow: HEAD, GET, OPTIONS`.

use super::error::ApiError;
use super::request::Method;
use super::status::Status;
use Method::{Delete, Get, Head, Options, Post, Put};

/// Methods a path allows, in the order RabbitMQ lists them in Allow.
pub type Allow = &'static [Method];

const READ: Allow = &[Head, Get, Options];
const READ_PUT: Allow = &[Head, Get, Put, Options];
const READ_POST: Allow = &[Head, Get, Post, Options];
const READ_DELETE: Allow = &[Head, Get, Delete, Options];
const READ_PUT_DELETE: Allow = &[Head, Get, Put, Delete, Options];
const GET_ONLY: Allow = &[Get, Options];
const PUT_DELETE: Allow = &[Put, Delete, Options];
const POST: Allow = &[Post, Options];
const PUT: Allow = &[Put, Options];
const DELETE: Allow = &[Delete, Options];

/// Whether a binding's destination is a queue (`q`) or an exchange (`e`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Queue,
    Exchange,
}

/// A management API endpoint and its decoded path parameters.
#[rustfmt::skip]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`: the web page.
    WebUi,
    Overview,
    ClusterName,
    Nodes,
    Node { node: String },
    NodeMemory { node: String, relative: bool },
    NodeMemoryEts { node: String, filter: Option<String>, relative: bool },
    Extensions,
    /// `/api/definitions` and its old name `/api/all-configuration`.
    Definitions,
    DefinitionsVhost { vhost: String },
    Parameters,
    ParametersComponent { component: String },
    ParametersComponentVhost { component: String, vhost: String },
    Parameter { component: String, vhost: String, name: String },
    GlobalParameters,
    GlobalParameter { name: String },
    /// The shovel_management plugin's status listing.
    Shovels,
    ShovelsVhost { vhost: String },
    /// `/api/shovels/vhost/{vhost}/{name}`: GET lists the vhost's shovels (as RabbitMQ 3.10),
    /// DELETE deletes the dynamic shovel.
    Shovel { vhost: String, name: String },
    /// `/api/shovels/vhost/{vhost}/{name}/restart`: DELETE stops and starts the shovel.
    ShovelRestart { vhost: String, name: String },
    /// The federation_management plugin's status listing.
    FederationLinks,
    FederationLinksVhost { vhost: String },
    /// The links neither running nor starting.
    FederationLinksDown,
    FederationLinksVhostDown { vhost: String },
    /// `/api/federation-links/vhost/{vhost}/{id}/{node}/restart`: DELETE restarts the link.
    FederationLinkRestart { vhost: String, id: String, node: String },
    Policies,
    PoliciesVhost { vhost: String },
    Policy { vhost: String, name: String },
    OperatorPolicies,
    OperatorPoliciesVhost { vhost: String },
    OperatorPolicy { vhost: String, name: String },
    VhostLimits,
    VhostLimitsVhost { vhost: String },
    VhostLimit { vhost: String, name: String },
    UserLimits,
    UserLimitsUser { user: String },
    UserLimit { user: String, name: String },
    Connections,
    Connection { name: String },
    ConnectionChannels { name: String },
    ConnectionsOfUser { user: String },
    Channels,
    Channel { name: String },
    Consumers,
    ConsumersVhost { vhost: String },
    Exchanges,
    ExchangesVhost { vhost: String },
    Exchange { vhost: String, name: String },
    ExchangePublish { vhost: String, name: String },
    ExchangeBindingsSource { vhost: String, name: String },
    ExchangeBindingsDestination { vhost: String, name: String },
    Queues,
    QueuesVhost { vhost: String },
    Queue { vhost: String, name: String },
    QueueBindings { vhost: String, name: String },
    /// DELETE purges.
    QueueContents { vhost: String, name: String },
    QueueGet { vhost: String, name: String },
    QueueActions { vhost: String, name: String },
    Bindings,
    BindingsVhost { vhost: String },
    /// `/api/bindings/{vhost}/e/{source}/{q|e}/{destination}`: list or POST to create.
    BindingsBetween { vhost: String, source: String, kind: DestKind, destination: String },
    /// The same with the binding's properties key: GET or DELETE one binding.
    Binding { vhost: String, source: String, kind: DestKind, destination: String, props: String },
    Vhosts,
    Vhost { vhost: String },
    VhostStart { vhost: String, node: String },
    VhostPermissions { vhost: String },
    VhostTopicPermissions { vhost: String },
    VhostConnections { vhost: String },
    VhostChannels { vhost: String },
    Users,
    UsersWithoutPermissions,
    UsersBulkDelete,
    User { name: String },
    UserPermissions { user: String },
    UserTopicPermissions { user: String },
    FeatureFlags,
    FeatureFlagEnable { name: String },
    Whoami,
    Permissions,
    Permission { vhost: String, user: String },
    TopicPermissions,
    TopicPermission { vhost: String, user: String },
    AlivenessTest { vhost: String },
    HealthchecksNode,
    HealthchecksNodeNamed { node: String },
    HealthAlarms,
    HealthLocalAlarms,
    HealthCertificateExpiration { within: String, unit: String },
    HealthPortListener { port: String },
    HealthProtocolListener { protocol: String },
    HealthVirtualHosts,
    HealthMirrorSyncCritical,
    HealthQuorumCritical,
    Reset,
    ResetNode { node: String },
    RebalanceQueues,
    /// OAuth settings for the web page; answered without authentication.
    Auth,
    Login,
    AuthAttempts { node: String },
    AuthAttemptsSource { node: String },
}

/// What to do with a request, decided from its method and path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// Authenticate, then handle.
    Route(Route),
    /// OPTIONS: 200 with this Allow and no body, no authentication (CORS preflight).
    Options { allow: String },
    /// Refused before authentication (405 with Allow, 404, 400).
    Refuse(ApiError),
}

/// Routes a request.
pub fn dispatch(method: Method, segments: &[String]) -> Dispatch {
    if method == Method::Unknown {
        return Dispatch::Refuse(ApiError::empty(Status::NOT_IMPLEMENTED));
    }
    let (route, allow) = match resolve(segments) {
        Some(route) => {
            let allow = route.allow();
            (Some(route), allow)
        }
        None => (None, READ),
    };
    if !allow.contains(&method) {
        return Dispatch::Refuse(ApiError::method_not_allowed(allow_header(allow)));
    }
    if method == Options {
        return Dispatch::Options {
            allow: allow_header(allow),
        };
    }
    match route {
        Some(route) => Dispatch::Route(route),
        None if segments.iter().any(|s| s.contains(['/', '\\', '\0'])) => {
            Dispatch::Refuse(ApiError::empty(Status::BAD_REQUEST))
        }
        None => Dispatch::Refuse(ApiError::not_found()),
    }
}

/// `HEAD, GET, OPTIONS`.
pub fn allow_header(allow: Allow) -> String {
    allow
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The route a path names, or None for a path outside the API.
pub fn resolve(segments: &[String]) -> Option<Route> {
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    match s.as_slice() {
        [] => Some(Route::WebUi),
        ["api", rest @ ..] => resolve_api(rest),
        _ => None,
    }
}

fn o(s: &str) -> String {
    s.to_string()
}

fn dest_kind(s: &str) -> Option<DestKind> {
    match s {
        "q" => Some(DestKind::Queue),
        "e" => Some(DestKind::Exchange),
        _ => None,
    }
}

#[rustfmt::skip]
fn resolve_api(s: &[&str]) -> Option<Route> {
    use Route::*;
    Some(match *s {
        ["overview"] => Overview,
        ["cluster-name"] => ClusterName,
        ["extensions"] => Extensions,
        ["definitions"] | ["all-configuration"] => Definitions,
        ["definitions", vhost] => DefinitionsVhost { vhost: o(vhost) },
        ["nodes", ..] => return resolve_nodes(&s[1..]),
        [
            "parameters" | "global-parameters" | "policies" | "operator-policies" | "vhost-limits"
            | "user-limits",
            ..,
        ] => return resolve_settings(s),
        ["connections"] => Connections,
        ["connections", "username", u] => ConnectionsOfUser { user: o(u) },
        ["connections", n] => Connection { name: o(n) },
        ["connections", n, "channels"] => ConnectionChannels { name: o(n) },
        ["channels"] => Channels,
        ["channels", n] => Channel { name: o(n) },
        ["consumers"] => Consumers,
        ["consumers", v] => ConsumersVhost { vhost: o(v) },
        ["exchanges", ..] => return resolve_exchanges(&s[1..]),
        ["queues", ..] => return resolve_queues(&s[1..]),
        ["bindings", ..] => return resolve_bindings(&s[1..]),
        ["vhosts", ..] => return resolve_vhosts(&s[1..]),
        ["users", ..] => return resolve_users(&s[1..]),
        ["health", "checks", ..] => return resolve_health(&s[2..]),
        ["feature-flags"] => FeatureFlags,
        ["feature-flags", n, "enable"] => FeatureFlagEnable { name: o(n) },
        ["whoami"] => Whoami,
        ["shovels"] => Shovels,
        ["shovels", v] => ShovelsVhost { vhost: o(v) },
        ["shovels", "vhost", v, n] => Shovel { vhost: o(v), name: o(n) },
        ["shovels", "vhost", v, n, "restart"] => ShovelRestart { vhost: o(v), name: o(n) },
        ["federation-links"] => FederationLinks,
        ["federation-links", v] => FederationLinksVhost { vhost: o(v) },
        ["federation-links", "state", "down"] => FederationLinksDown,
        ["federation-links", v, "state", "down"] => FederationLinksVhostDown { vhost: o(v) },
        ["federation-links", "vhost", v, id, n, "restart"] => FederationLinkRestart {
            vhost: o(v),
            id: o(id),
            node: o(n),
        },
        ["permissions"] => Permissions,
        ["permissions", v, u] => Permission { vhost: o(v), user: o(u) },
        ["topic-permissions"] => TopicPermissions,
        ["topic-permissions", v, u] => TopicPermission { vhost: o(v), user: o(u) },
        ["aliveness-test", v] => AlivenessTest { vhost: o(v) },
        ["healthchecks", "node"] => HealthchecksNode,
        ["healthchecks", "node", n] => HealthchecksNodeNamed { node: o(n) },
        ["reset"] => Reset,
        ["reset", n] => ResetNode { node: o(n) },
        ["rebalance", "queues"] => RebalanceQueues,
        ["auth"] => Auth,
        ["login"] => Login,
        ["auth", "attempts", n] => AuthAttempts { node: o(n) },
        ["auth", "attempts", n, "source"] => AuthAttemptsSource { node: o(n) },
        _ => return None,
    })
}

#[rustfmt::skip]
fn resolve_nodes(s: &[&str]) -> Option<Route> {
    use Route::*;
    Some(match *s {
        [] => Nodes,
        [node] => Node { node: o(node) },
        [node, "memory"] => NodeMemory { node: o(node), relative: false },
        [node, "memory", "relative"] => NodeMemory { node: o(node), relative: true },
        [node, "memory", "ets", ref rest @ ..] => {
            let (filter, relative) = match *rest {
                [] => (None, false),
                ["relative"] => (None, true),
                [f] => (Some(o(f)), false),
                [f, "relative"] => (Some(o(f)), true),
                _ => return None,
            };
            NodeMemoryEts { node: o(node), filter, relative }
        }
        _ => return None,
    })
}

/// Runtime parameters, policies and limits.
#[rustfmt::skip]
fn resolve_settings(s: &[&str]) -> Option<Route> {
    use Route::*;
    Some(match *s {
        ["parameters"] => Parameters,
        ["parameters", c] => ParametersComponent { component: o(c) },
        ["parameters", c, v] => ParametersComponentVhost { component: o(c), vhost: o(v) },
        ["parameters", c, v, n] => Parameter { component: o(c), vhost: o(v), name: o(n) },
        ["global-parameters"] => GlobalParameters,
        ["global-parameters", n] => GlobalParameter { name: o(n) },
        ["policies"] => Policies,
        ["policies", v] => PoliciesVhost { vhost: o(v) },
        ["policies", v, n] => Policy { vhost: o(v), name: o(n) },
        ["operator-policies"] => OperatorPolicies,
        ["operator-policies", v] => OperatorPoliciesVhost { vhost: o(v) },
        ["operator-policies", v, n] => OperatorPolicy { vhost: o(v), name: o(n) },
        ["vhost-limits"] => VhostLimits,
        ["vhost-limits", v] => VhostLimitsVhost { vhost: o(v) },
        ["vhost-limits", v, n] => VhostLimit { vhost: o(v), name: o(n) },
        ["user-limits"] => UserLimits,
        ["user-limits", u] => UserLimitsUser { user: o(u) },
        ["user-limits", u, n] => UserLimit { user: o(u), name: o(n) },
        _ => return None,
    })
}

#[rustfmt::skip]
fn resolve_exchanges(s: &[&str]) -> Option<Route> {
    use Route::*;
    Some(match *s {
        [] => Exchanges,
        [v] => ExchangesVhost { vhost: o(v) },
        [v, n] => Exchange { vhost: o(v), name: o(n) },
        [v, n, "publish"] => ExchangePublish { vhost: o(v), name: o(n) },
        [v, n, "bindings", "source"] => ExchangeBindingsSource { vhost: o(v), name: o(n) },
        [v, n, "bindings", "destination"] => {
            ExchangeBindingsDestination { vhost: o(v), name: o(n) }
        }
        _ => return None,
    })
}

#[rustfmt::skip]
fn resolve_queues(s: &[&str]) -> Option<Route> {
    use Route::*;
    Some(match *s {
        [] => Queues,
        [v] => QueuesVhost { vhost: o(v) },
        [v, n] => Queue { vhost: o(v), name: o(n) },
        [v, n, "bindings"] => QueueBindings { vhost: o(v), name: o(n) },
        [v, n, "contents"] => QueueContents { vhost: o(v), name: o(n) },
        [v, n, "get"] => QueueGet { vhost: o(v), name: o(n) },
        [v, n, "actions"] => QueueActions { vhost: o(v), name: o(n) },
        _ => return None,
    })
}

/// RabbitMQ 3.10 crashes (500) on a destination type other than `q` or `e`; coney treats
/// such a path as unknown (404) instead.
#[rustfmt::skip]
fn resolve_bindings(s: &[&str]) -> Option<Route> {
    use Route::*;
    Some(match *s {
        [] => Bindings,
        [v] => BindingsVhost { vhost: o(v) },
        [v, "e", src, kind, dst] => BindingsBetween {
            vhost: o(v),
            source: o(src),
            kind: dest_kind(kind)?,
            destination: o(dst),
        },
        [v, "e", src, kind, dst, props] => Binding {
            vhost: o(v),
            source: o(src),
            kind: dest_kind(kind)?,
            destination: o(dst),
            props: o(props),
        },
        _ => return None,
    })
}

#[rustfmt::skip]
fn resolve_vhosts(s: &[&str]) -> Option<Route> {
    use Route::*;
    Some(match *s {
        [] => Vhosts,
        [v] => Vhost { vhost: o(v) },
        [v, "start", n] => VhostStart { vhost: o(v), node: o(n) },
        [v, "permissions"] => VhostPermissions { vhost: o(v) },
        [v, "topic-permissions"] => VhostTopicPermissions { vhost: o(v) },
        [v, "connections"] => VhostConnections { vhost: o(v) },
        [v, "channels"] => VhostChannels { vhost: o(v) },
        _ => return None,
    })
}

#[rustfmt::skip]
fn resolve_users(s: &[&str]) -> Option<Route> {
    use Route::*;
    Some(match *s {
        [] => Users,
        ["without-permissions"] => UsersWithoutPermissions,
        ["bulk-delete"] => UsersBulkDelete,
        [u] => User { name: o(u) },
        [u, "permissions"] => UserPermissions { user: o(u) },
        [u, "topic-permissions"] => UserTopicPermissions { user: o(u) },
        _ => return None,
    })
}

#[rustfmt::skip]
fn resolve_health(s: &[&str]) -> Option<Route> {
    use Route::*;
    Some(match *s {
        ["alarms"] => HealthAlarms,
        ["local-alarms"] => HealthLocalAlarms,
        ["certificate-expiration", w, u] => HealthCertificateExpiration { within: o(w), unit: o(u) },
        ["port-listener", p] => HealthPortListener { port: o(p) },
        ["protocol-listener", p] => HealthProtocolListener { protocol: o(p) },
        ["virtual-hosts"] => HealthVirtualHosts,
        ["node-is-mirror-sync-critical"] => HealthMirrorSyncCritical,
        ["node-is-quorum-critical"] => HealthQuorumCritical,
        _ => return None,
    })
}

impl Route {
    /// The methods this endpoint allows (RabbitMQ 3.10's Allow header for it).
    pub fn allow(&self) -> Allow {
        use Route::*;
        match self {
            ClusterName => READ_PUT,
            Definitions | DefinitionsVhost { .. } => READ_POST,
            Parameter { .. } | GlobalParameter { .. } | Policy { .. } | OperatorPolicy { .. } => {
                READ_PUT_DELETE
            }
            VhostLimits | VhostLimitsVhost { .. } | UserLimits | UserLimitsUser { .. } => GET_ONLY,
            VhostLimit { .. } | UserLimit { .. } => PUT_DELETE,
            Connection { .. } | ConnectionsOfUser { .. } => READ_DELETE,
            Exchange { .. } | Queue { .. } | Vhost { .. } | User { .. } => READ_PUT_DELETE,
            Permission { .. } | TopicPermission { .. } => READ_PUT_DELETE,
            ExchangePublish { .. } | QueueGet { .. } | QueueActions { .. } => POST,
            VhostStart { .. } | UsersBulkDelete | RebalanceQueues | Login => POST,
            QueueContents { .. } | Reset | ResetNode { .. } => DELETE,
            BindingsBetween { .. } => READ_POST,
            Binding { .. } | AuthAttempts { .. } | AuthAttemptsSource { .. } => READ_DELETE,
            Shovel { .. } | ShovelRestart { .. } | FederationLinkRestart { .. } => READ_DELETE,
            FeatureFlagEnable { .. } => PUT,
            _ => READ,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::decode_path;

    const ROUTES: &str = include_str!("../../tests/fixtures/rabbitmq-3.10-http/routes.tsv");

    fn segments(path: &str) -> Vec<String> {
        let mut s: Vec<String> = path[1..]
            .split('/')
            .map(|s| decode_path(s).unwrap())
            .collect();
        if s.last().is_some_and(|l| l.is_empty()) {
            s.pop();
        }
        s
    }

    /// Every path RabbitMQ 3.10 serves resolves to a route with RabbitMQ's Allow header, and
    /// the ones it does not serve (a GET without credentials got 404) resolve to none.
    #[test]
    fn table_matches_rabbitmq_3_10() {
        let mut checked = 0;
        for line in ROUTES.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split('\t').collect();
            let (pattern, path, allow, get_status) = (f[0], f[1], f[3], f[4]);
            let route = resolve(&segments(path));
            let served = get_status != "404";
            if pattern.contains("/x/") {
                // RabbitMQ routes any destination type and then crashes (500) on one that
                // is not q or e; coney answers such paths as unknown.
                assert_eq!(route, None, "{pattern}");
                continue;
            }
            if !served {
                assert_eq!(route, None, "{pattern} is not a 3.10 endpoint");
                continue;
            }
            let route = route.unwrap_or_else(|| panic!("{pattern} does not resolve"));
            assert_eq!(allow_header(route.allow()), allow, "{pattern}");
            checked += 1;
        }
        assert!(checked >= 90, "only {checked} routes checked");
    }

    /// Parameters come out decoded: `%2F` is the default vhost, `+` stays a plus.
    #[test]
    fn parameters_are_decoded() {
        assert_eq!(
            resolve(&segments("/api/queues/%2F/a%20b%2Fc")),
            Some(Route::Queue {
                vhost: "/".into(),
                name: "a b/c".into()
            })
        );
        assert_eq!(
            resolve(&segments("/api/queues/v%2f2/a+b/get")),
            Some(Route::QueueGet {
                vhost: "v/2".into(),
                name: "a+b".into()
            })
        );
        assert_eq!(
            resolve(&segments("/api/bindings/%2F/e/amq.direct/q/q1/~")),
            Some(Route::Binding {
                vhost: "/".into(),
                source: "amq.direct".into(),
                kind: DestKind::Queue,
                destination: "q1".into(),
                props: "~".into()
            })
        );
        assert_eq!(
            resolve(&segments(
                "/api/connections/127.0.0.1%3A5000%20-%3E%20127.0.0.1%3A5672"
            )),
            Some(Route::Connection {
                name: "127.0.0.1:5000 -> 127.0.0.1:5672".into()
            })
        );
        assert_eq!(
            resolve(&segments("/api/queues/%2F//get")),
            Some(Route::QueueGet {
                vhost: "/".into(),
                name: "".into()
            })
        );
        assert_eq!(resolve(&segments("/api/whoami/")), Some(Route::Whoami));
        assert_eq!(resolve(&segments("/")), Some(Route::WebUi));
    }

    /// Refusals before authentication, as RabbitMQ 3.10 answered them (responses.txt).
    #[test]
    fn refusals_like_rabbitmq() {
        let d = |m, p| dispatch(m, &segments(p));
        let refuse = |d: Dispatch| match d {
            Dispatch::Refuse(e) => (e.status.code(), e.allow, e.body.map(|b| b.1.to_string())),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refuse(d(Get, "/api/nope")),
            (404, None, Some("Not Found".into()))
        );
        assert_eq!(
            refuse(d(Method::Patch, "/api/nope")),
            (405, Some("HEAD, GET, OPTIONS".into()), None)
        );
        assert_eq!(refuse(d(Get, "/api/nope%2Fx")), (400, None, None));
        assert_eq!(refuse(d(Get, "/api//queues")).0, 404);
        assert_eq!(
            refuse(d(Post, "/api/overview")),
            (405, Some("HEAD, GET, OPTIONS".into()), None)
        );
        assert_eq!(
            refuse(d(Method::Patch, "/api/queues/%2F/q1")),
            (405, Some("HEAD, GET, PUT, DELETE, OPTIONS".into()), None)
        );
        assert_eq!(refuse(d(Get, "/api/queues/%2F/q/get")).0, 405);
        assert_eq!(refuse(d(Get, "/api/bindings/v/e/x/x/y")).0, 404);
        // Like any unknown path holding an encoded slash (RabbitMQ answers
        // /api/exchanges/%2F/amq.direct/bindings with 400 for the same reason).
        assert_eq!(refuse(d(Get, "/api/bindings/%2F/e/x/x/y")).0, 400);
        assert_eq!(
            d(Options, "/api/queues"),
            Dispatch::Options {
                allow: "HEAD, GET, OPTIONS".into()
            }
        );
        assert_eq!(d(Head, "/api/overview"), Dispatch::Route(Route::Overview));
        assert_eq!(refuse(d(Method::Unknown, "/api/nope")), (501, None, None));
        assert_eq!(
            refuse(d(Head, "/api/vhost-limits")),
            (405, Some("GET, OPTIONS".into()), None)
        );
    }
}

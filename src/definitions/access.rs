//! Users, vhosts, permissions and topic permissions between a definitions document and
//! `AccessControl`, with RabbitMQ 3.10's import rules: `password_hash` with its
//! `hashing_algorithm` (or the default for the file's `rabbit_version`), or a clear-text
//! `password` hashed on import, never both; tags as a list or a comma-separated string; vhost
//! limits from the `vhost-limits` parameter. Import is all or nothing (RabbitMQ stops half
//! way); anything present that coney would not act on is refused with its name.

use super::document::{
    Definitions, OtherKeys, ParameterDef, PermissionDef, Tags, TopicPermissionDef, UserDef,
    UserLimitsDef, VhostDef, VhostMetadata,
};
use crate::auth::password::{HashingAlgorithm, PasswordHash};
use crate::auth::users::{AccessControl, User, UserLimits, UserTag, Vhost, VhostLimits};
use serde_json::Value;
use std::fmt;

/// The component of vhost limits among runtime parameters.
pub const VHOST_LIMITS_COMPONENT: &str = "vhost-limits";

/// Which entry of the document was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub entry: String,
    pub reason: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.entry, self.reason)
    }
}

fn refuse(entry: impl Into<String>, reason: impl fmt::Display) -> ImportError {
    ImportError {
        entry: entry.into(),
        reason: reason.to_string(),
    }
}

fn no_other_keys(entry: &str, other: &OtherKeys) -> Result<(), ImportError> {
    match other.keys().next() {
        None => Ok(()),
        Some(k) => Err(refuse(entry, format!("unknown key '{k}'"))),
    }
}

/// Applies the document's users, vhosts, vhost limits, permissions and topic permissions to a
/// copy of `ac` and returns it; `ac` is untouched when an entry is refused.
pub fn import_access(defs: &Definitions, ac: &AccessControl) -> Result<AccessControl, ImportError> {
    let mut next = ac.clone();
    for u in &defs.users {
        next.put_user(import_user(u, defs.rabbit_version.as_deref())?);
    }
    for v in &defs.vhosts {
        let limits = next
            .vhost(&v.name)
            .map(|old| old.limits)
            .unwrap_or_default();
        next.put_vhost(import_vhost(v, limits)?);
    }
    for p in defs
        .parameters
        .iter()
        .filter(|p| p.component == VHOST_LIMITS_COMPONENT)
    {
        let entry = format!("vhost limits of '{}'", p.vhost);
        let Some(mut vhost) = next.vhost(&p.vhost).cloned() else {
            return Err(refuse(entry, "no such vhost"));
        };
        vhost.limits = import_vhost_limits(&entry, p)?;
        next.put_vhost(vhost);
    }
    for p in &defs.permissions {
        let entry = format!("permissions of '{}' in vhost '{}'", p.user, p.vhost);
        no_other_keys(&entry, &p.other)?;
        next.set_permissions(&p.user, &p.vhost, &p.configure, &p.write, &p.read)
            .map_err(|e| refuse(entry, e))?;
    }
    for p in &defs.topic_permissions {
        let entry = format!(
            "topic permissions of '{}' in vhost '{}' on '{}'",
            p.user, p.vhost, p.exchange
        );
        no_other_keys(&entry, &p.other)?;
        next.set_topic_permissions(&p.user, &p.vhost, &p.exchange, &p.write, &p.read)
            .map_err(|e| refuse(entry, e))?;
    }
    Ok(next)
}

/// The algorithm of a hash given without `hashing_algorithm`, by the exporting version.
fn default_algorithm(rabbit_version: Option<&str>) -> HashingAlgorithm {
    let legacy = ["3.5.", "3.4.", "3.3.", "3.2.", "3.1.", "2."];
    match rabbit_version {
        Some(v) if legacy.iter().any(|p| v.starts_with(p)) => HashingAlgorithm::Md5,
        _ => HashingAlgorithm::DEFAULT,
    }
}

fn import_user(u: &UserDef, rabbit_version: Option<&str>) -> Result<User, ImportError> {
    let entry = format!("user '{}'", u.name);
    let mut other = u.other.clone();
    // Exports before RabbitMQ 3.0 had "administrator": true|false instead of tags.
    let legacy_admin = other.remove("administrator");
    no_other_keys(&entry, &other)?;
    let tags = match (&u.tags, legacy_admin) {
        (Some(t), _) => t.names().iter().map(|t| UserTag::parse(t)).collect(),
        (None, Some(Value::Bool(true))) => vec![UserTag::Administrator],
        (None, Some(Value::String(s))) if s == "true" => vec![UserTag::Administrator],
        (None, Some(_)) => Vec::new(),
        (None, None) => return Err(refuse(entry, "no tags")),
    };
    let password = match (&u.password, &u.password_hash) {
        (Some(_), Some(_)) => return Err(refuse(entry, "both password and password_hash")),
        (Some(clear), None) => PasswordHash::generate(HashingAlgorithm::DEFAULT, clear.as_bytes())
            .map_err(|e| refuse(&entry, e))?,
        (None, hash) => {
            let algorithm = match &u.hashing_algorithm {
                Some(name) => HashingAlgorithm::from_name(name)
                    .ok_or_else(|| refuse(&entry, format!("unknown hashing_algorithm '{name}'")))?,
                None => default_algorithm(rabbit_version),
            };
            PasswordHash::from_base64(algorithm, hash.as_deref().unwrap_or(""))
                .map_err(|e| refuse(&entry, e))?
        }
    };
    let limits = match &u.limits {
        None => UserLimits::default(),
        Some(l) => {
            no_other_keys(&format!("limits of {entry}"), &l.other)?;
            UserLimits {
                max_connections: l.max_connections,
                max_channels: l.max_channels,
            }
        }
    };
    Ok(User {
        name: u.name.clone(),
        password,
        tags,
        limits,
    })
}

fn import_vhost(v: &VhostDef, limits: VhostLimits) -> Result<Vhost, ImportError> {
    let entry = format!("vhost '{}'", v.name);
    no_other_keys(&entry, &v.other)?;
    if v.tracing == Some(true) {
        return Err(refuse(entry, "message tracing is not supported"));
    }
    let meta = v.metadata.clone().unwrap_or_default();
    no_other_keys(&format!("metadata of {entry}"), &meta.other)?;
    Ok(Vhost {
        name: v.name.clone(),
        description: meta.description.unwrap_or_default(),
        tags: meta.tags.map(|t| t.names()).unwrap_or_default(),
        default_queue_type: meta.default_queue_type,
        limits,
    })
}

fn import_vhost_limits(entry: &str, p: &ParameterDef) -> Result<VhostLimits, ImportError> {
    let Some(map) = p.value.as_object() else {
        return Err(refuse(entry, "value is not an object"));
    };
    let mut limits = VhostLimits::default();
    for (k, v) in map {
        let n = v
            .as_i64()
            .ok_or_else(|| refuse(entry, format!("'{k}' is not an integer")))?;
        match k.as_str() {
            "max-connections" => limits.max_connections = Some(n),
            "max-queues" => limits.max_queues = Some(n),
            _ => return Err(refuse(entry, format!("unknown limit '{k}'"))),
        }
    }
    Ok(limits)
}

/// Writes `ac`'s users, vhosts, permissions, topic permissions and vhost-limits parameters
/// into `defs` in RabbitMQ 3.10's export form, replacing what was there.
pub fn export_access(ac: &AccessControl, defs: &mut Definitions) {
    defs.users = ac.users().map(export_user).collect();
    defs.vhosts = ac.vhosts().map(export_vhost).collect();
    defs.permissions = ac
        .permissions()
        .map(|(user, vhost, p)| PermissionDef {
            configure: p.configure.source().to_owned(),
            read: p.read.source().to_owned(),
            user: user.to_owned(),
            vhost: vhost.to_owned(),
            write: p.write.source().to_owned(),
            other: OtherKeys::new(),
        })
        .collect();
    defs.topic_permissions = ac
        .topic_permissions()
        .map(|(user, vhost, exchange, p)| TopicPermissionDef {
            exchange: exchange.to_owned(),
            read: p.read_source().to_owned(),
            user: user.to_owned(),
            vhost: vhost.to_owned(),
            write: p.write_source().to_owned(),
            other: OtherKeys::new(),
        })
        .collect();
    defs.parameters
        .retain(|p| p.component != VHOST_LIMITS_COMPONENT);
    defs.parameters.extend(
        ac.vhosts()
            .filter(|v| !v.limits.is_empty())
            .map(|v| ParameterDef {
                component: VHOST_LIMITS_COMPONENT.to_owned(),
                name: "limits".to_owned(),
                value: Value::Object(limit_pairs(&v.limits).into_iter().collect()),
                vhost: v.name.clone(),
                other: OtherKeys::new(),
            }),
    );
}

fn export_user(u: &User) -> UserDef {
    UserDef {
        hashing_algorithm: Some(u.password.algorithm().name().to_owned()),
        limits: Some(UserLimitsDef {
            max_channels: u.limits.max_channels,
            max_connections: u.limits.max_connections,
            other: OtherKeys::new(),
        }),
        name: u.name.clone(),
        password: None,
        password_hash: Some(u.password.to_base64()),
        tags: Some(Tags::List(
            u.tags.iter().map(|t| t.name().to_owned()).collect(),
        )),
        other: OtherKeys::new(),
    }
}

fn limit_pairs(l: &VhostLimits) -> Vec<(String, Value)> {
    let mut pairs = Vec::new();
    if let Some(n) = l.max_connections {
        pairs.push(("max-connections".to_owned(), Value::from(n)));
    }
    if let Some(n) = l.max_queues {
        pairs.push(("max-queues".to_owned(), Value::from(n)));
    }
    pairs
}

fn export_vhost(v: &Vhost) -> VhostDef {
    let pairs = limit_pairs(&v.limits)
        .into_iter()
        .map(|(k, n)| Value::Array(vec![Value::String(k), n]))
        .collect();
    VhostDef {
        limits: Some(Value::Array(pairs)),
        metadata: Some(VhostMetadata {
            default_queue_type: v.default_queue_type.clone(),
            description: Some(v.description.clone()),
            tags: Some(Tags::List(v.tags.clone())),
            other: OtherKeys::new(),
        }),
        name: v.name.clone(),
        tracing: None,
        other: OtherKeys::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::check::{Resource, ResourceKind, SourceExchange};

    const USERS: &[u8] = include_bytes!("../../tests/fixtures/rabbitmq-3.10-users.json");
    const RICH: &[u8] = include_bytes!("../../tests/fixtures/rabbitmq-3.10-definitions.json");

    fn import(json: &[u8]) -> AccessControl {
        let d = Definitions::parse(json).unwrap();
        import_access(&d, &AccessControl::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Users created on RabbitMQ 3.10.8 with `rabbitmqctl add_user` (sha256 by default,
    /// sha512 and md5 by switching password_hashing_module) log in with their passwords and
    /// only with them; the user whose password was cleared cannot log in at all.
    #[test]
    fn rabbitmq_hashes_verify() {
        let ac = import(USERS);
        let good = [
            ("alice", "alice-secret-1"),
            ("bob", "pässwörd with spaces ✓"),
            ("dave", "dave-sha512"),
            ("erin", "erin-md5"),
            ("guest", "guest"),
        ];
        for (user, password) in good {
            assert!(
                ac.authenticate(user, password.as_bytes(), true).is_ok(),
                "{user}"
            );
            let mut wrong = password.as_bytes().to_vec();
            wrong[0] ^= 1;
            assert!(ac.authenticate(user, &wrong, true).is_err(), "{user}");
            assert!(
                ac.authenticate(user, &password.as_bytes()[1..], true)
                    .is_err(),
                "{user}"
            );
        }
        let algorithm = |u: &str| ac.user(u).unwrap().password.algorithm();
        assert_eq!(algorithm("dave"), HashingAlgorithm::Sha512);
        assert_eq!(algorithm("erin"), HashingAlgorithm::Md5);
        assert_eq!(algorithm("alice"), HashingAlgorithm::Sha256);
        for p in ["", "x", "carol"] {
            assert!(ac.authenticate("carol", p.as_bytes(), true).is_err());
        }
        let bob = ac.user("bob").unwrap();
        assert_eq!(
            bob.tags,
            [
                UserTag::Monitoring,
                UserTag::Policymaker,
                UserTag::Impersonator,
                UserTag::Other("custom-tag".into())
            ]
        );
    }

    /// The rich export imports into rights that behave as on RabbitMQ: app's regexes in
    /// prod, its topic permission with {username} expanded, mon's read-only "/", dev's limits
    /// and queue type, the user limits of app.
    #[test]
    fn rich_export_imports() {
        let ac = import(RICH);
        for (u, p) in [
            ("admin", "admin-pw"),
            ("mon", "mon-pw"),
            ("ops", "ops-pw"),
            ("relay", "relay-pw"),
            ("app", "app-pw"),
        ] {
            assert!(ac.authenticate(u, p.as_bytes(), true).is_ok(), "{u}");
        }
        let app = ac.open_vhost("app", "prod", 0, 0).unwrap();
        assert!(app.check_queue_declare(b"app.orders").is_ok());
        assert!(app.check_queue_declare(b"amq.gen-x").is_ok());
        assert!(app.check_queue_declare(b"orders").is_err());
        assert!(app.check_basic_publish(b"events").is_ok());
        assert!(app.check_basic_publish(b"events2").is_err());
        assert!(app.check_topic_write(b"events", b"app.created").is_ok());
        assert!(app.check_topic_write(b"events", b"orders.created").is_err());
        let q = Resource {
            kind: ResourceKind::Queue,
            name: b"app.q",
        };
        assert!(
            app.check_bind(q, b"events", b"audit.x", SourceExchange::Topic)
                .is_err(),
            "read ^app\\. on exchange"
        );
        assert_eq!(app.default_queue_type(), Some("quorum"));
        assert_eq!(
            ac.user("app").unwrap().limits,
            UserLimits {
                max_connections: Some(5),
                max_channels: Some(20)
            }
        );
        assert!(
            ac.open_vhost("app", "prod", 0, 5).is_err(),
            "user connection limit 5"
        );
        let dev = ac.vhost("dev").unwrap();
        assert_eq!(
            dev.limits,
            VhostLimits {
                max_connections: Some(10),
                max_queues: Some(100)
            }
        );
        assert!(ac.open_vhost("guest", "dev", 10, 0).is_err());
        let mon = ac.open_vhost("mon", "/", 0, 0).unwrap();
        assert!(mon.check_basic_get(b"app.work").is_ok());
        assert!(mon.check_queue_declare(b"x").is_err());
        let prod = ac.vhost("prod").unwrap();
        assert_eq!(
            (prod.description.as_str(), prod.tags.as_slice()),
            (
                "Production services",
                &["eu".to_string(), "critical".to_string()][..]
            )
        );
        assert!(ac.authenticate("locked", b"", true).is_err());
    }

    /// Exporting the imported tables gives RabbitMQ's own users, permissions, topic
    /// permissions, vhosts (dev's tags "" written as the list [] RabbitMQ re-exports after
    /// import) and vhost-limits parameter.
    #[test]
    fn export_matches_rabbitmq() {
        let original = Definitions::parse(RICH).unwrap();
        let ac = import(RICH);
        let mut d = Definitions::default();
        export_access(&ac, &mut d);
        assert_eq!(sorted(&d.users), sorted(&original.users));
        assert_eq!(sorted(&d.permissions), sorted(&original.permissions));
        assert_eq!(
            sorted(&d.topic_permissions),
            sorted(&original.topic_permissions)
        );
        let mut vhosts = original.vhosts.clone();
        for v in &mut vhosts {
            if let Some(m) = &mut v.metadata {
                m.tags = Some(Tags::List(m.tags.as_ref().unwrap().names()));
            }
        }
        assert_eq!(sorted(&d.vhosts), sorted(&vhosts));
        let limits: Vec<_> = original
            .parameters
            .iter()
            .filter(|p| p.component == VHOST_LIMITS_COMPONENT)
            .cloned()
            .collect();
        assert_eq!(d.parameters, limits);
        let again = import_access(&d, &AccessControl::new()).unwrap();
        assert_eq!(again.users().count(), ac.users().count());
    }

    /// The entries as sorted JSON texts, to compare lists whatever their order.
    fn sorted<T: serde::Serialize>(v: &[T]) -> Vec<String> {
        let mut s: Vec<String> = v
            .iter()
            .map(|x| serde_json::to_string(x).unwrap())
            .collect();
        s.sort();
        s
    }

    /// Entries coney would not act on, or that RabbitMQ refuses, are refused whole, naming
    /// the entry; the tables passed in are untouched.
    #[test]
    fn refusals_name_the_entry() {
        let cases = [
            (r#"{"users":[{"name":"u","password":"a","password_hash":"","tags":[]}]}"#, "user 'u': both password and password_hash"),
            (r#"{"users":[{"name":"u","password_hash":"","hashing_algorithm":"rabbit_password_hashing_bcrypt","tags":[]}]}"#, "user 'u': unknown hashing_algorithm 'rabbit_password_hashing_bcrypt'"),
            (r#"{"users":[{"name":"u","password_hash":"AAAA","tags":[]}]}"#, "user 'u': password_hash decodes to 3 bytes; rabbit_password_hashing_sha256 needs 36"),
            (r#"{"users":[{"name":"u","password_hash":""}]}"#, "user 'u': no tags"),
            (r#"{"users":[{"name":"u","password_hash":"","tags":[],"colour":"red"}]}"#, "user 'u': unknown key 'colour'"),
            (r#"{"vhosts":[{"name":"v","tracing":true}]}"#, "vhost 'v': message tracing is not supported"),
            (r#"{"parameters":[{"vhost":"nope","component":"vhost-limits","name":"limits","value":{"max-queues":1}}]}"#, "vhost limits of 'nope': no such vhost"),
            (r#"{"vhosts":[{"name":"v"}],"parameters":[{"vhost":"v","component":"vhost-limits","name":"limits","value":{"max-exchanges":1}}]}"#, "vhost limits of 'v': unknown limit 'max-exchanges'"),
            (r#"{"permissions":[{"user":"ghost","vhost":"/","configure":".*","write":".*","read":".*"}]}"#, "permissions of 'ghost' in vhost '/': no such user 'ghost'"),
            (r#"{"permissions":[{"user":"guest","vhost":"/","configure":"(a)\\1","write":".*","read":".*"}]}"#, "permissions of 'guest' in vhost '/': invalid permission pattern '(a)\\1'"),
        ];
        let base = AccessControl::with_default_user("guest", "guest").unwrap();
        for (json, want) in cases {
            let d = Definitions::parse(json.as_bytes()).unwrap();
            let e = import_access(&d, &base).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e} / {want}");
        }
    }

    /// Legacy forms: a hash without hashing_algorithm from a 3.5 export is md5, from 3.6.0
    /// or later sha256; "administrator": true stands for the tag; a clear-text password is
    /// hashed with sha256 on import.
    #[test]
    fn legacy_forms_import() {
        let sha256 = PasswordHash::generate(HashingAlgorithm::Sha256, b"pw")
            .unwrap()
            .to_base64();
        let json = format!(
            r#"{{"rabbit_version":"3.6.0","users":[{{"name":"a","password_hash":"{sha256}","administrator":true}},{{"name":"b","password":"clear","tags":"management,monitoring"}}]}}"#
        );
        let ac = import(json.as_bytes());
        assert!(ac.authenticate("a", b"pw", true).is_ok());
        assert_eq!(ac.user("a").unwrap().tags, [UserTag::Administrator]);
        assert!(ac.authenticate("b", b"clear", true).is_ok());
        assert_eq!(
            ac.user("b").unwrap().password.algorithm(),
            HashingAlgorithm::Sha256
        );
        assert_eq!(
            ac.user("b").unwrap().tags,
            [UserTag::Management, UserTag::Monitoring]
        );
        assert_eq!(default_algorithm(Some("3.5.7")), HashingAlgorithm::Md5);
        assert_eq!(default_algorithm(Some("2.8.7")), HashingAlgorithm::Md5);
        assert_eq!(default_algorithm(Some("3.10.8")), HashingAlgorithm::Sha256);
        assert_eq!(default_algorithm(None), HashingAlgorithm::Sha256);
    }
}

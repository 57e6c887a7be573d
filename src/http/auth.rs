//! Who may call the management API: Basic credentials checked by an `Authenticator` (the user
//! store lives elsewhere and implements it), then RabbitMQ's tag rules for what the endpoint
//! needs. Answers are RabbitMQ 3.10's (tests/fixtures/rabbitmq-3.10-http/responses.txt):
//! no credentials → 401 with the realm and no body; a failed login (wrong password, unknown
//! user, a scheme other than Basic) → 401 `not_authorized` "Login failed" with the realm; a
//! missing tag → 401 `not_authorised` naming it, without the realm.

use super::error::ApiError;
use super::request::Authorization;
use std::net::SocketAddr;

/// A user's tags that the management API looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tags(u8);

impl Tags {
    pub const ADMINISTRATOR: Tags = Tags(1);
    pub const MONITORING: Tags = Tags(2);
    pub const POLICYMAKER: Tags = Tags(4);
    pub const MANAGEMENT: Tags = Tags(8);
    pub const IMPERSONATOR: Tags = Tags(16);
    const NAMES: [(Tags, &'static str); 5] = [
        (Tags::ADMINISTRATOR, "administrator"),
        (Tags::MONITORING, "monitoring"),
        (Tags::POLICYMAKER, "policymaker"),
        (Tags::MANAGEMENT, "management"),
        (Tags::IMPERSONATOR, "impersonator"),
    ];

    pub const NONE: Tags = Tags(0);

    /// Tags from rabbitmqctl's `set_user_tags` words or a definitions file's comma list;
    /// tags the management API does not know give no rights and are not kept.
    pub fn parse(list: &str) -> Tags {
        list.split([',', ' '])
            .filter_map(|w| Tags::NAMES.iter().find(|(_, n)| *n == w.trim()))
            .fold(Tags::NONE, |acc, (t, _)| acc.with(*t))
    }

    pub fn with(self, other: Tags) -> Tags {
        Tags(self.0 | other.0)
    }

    pub fn has(self, tag: Tags) -> bool {
        self.0 & tag.0 != 0
    }

    /// The tag names in RabbitMQ's order, for `whoami` and `users`.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Tags::NAMES
            .into_iter()
            .filter(move |(t, _)| self.has(*t))
            .map(|(_, n)| n)
    }
}

/// Why a login was refused; the store decides, the API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user or wrong password.
    LoginFailed,
    /// A loopback-only user (`loopback_users`, guest by default) from another address.
    NotLoopback,
}

/// The user store, as the management API calls it.
pub trait Authenticator {
    fn authenticate(&self, user: &str, pass: &str, peer: &SocketAddr) -> Result<Tags, AuthError>;
}

/// A logged-in caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub tags: Tags,
}

/// What an endpoint requires of its caller (RabbitMQ's is_authorized, _monitor, _policies,
/// _admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any management-capable tag: administrator, monitoring, policymaker or management.
    Management,
    /// administrator or monitoring.
    Monitor,
    /// administrator or policymaker.
    Policymaker,
    Administrator,
}

impl Need {
    fn satisfied_by(self, t: Tags) -> bool {
        let any = |tags: &[Tags]| tags.iter().any(|&x| t.has(x));
        match self {
            Need::Management => any(&[
                Tags::ADMINISTRATOR,
                Tags::MONITORING,
                Tags::POLICYMAKER,
                Tags::MANAGEMENT,
            ]),
            Need::Monitor => any(&[Tags::ADMINISTRATOR, Tags::MONITORING]),
            Need::Policymaker => any(&[Tags::ADMINISTRATOR, Tags::POLICYMAKER]),
            Need::Administrator => t.has(Tags::ADMINISTRATOR),
        }
    }

    fn refusal(self) -> &'static str {
        match self {
            Need::Management => "Not management user",
            Need::Monitor => "Not monitor user",
            Need::Policymaker => "User not authorised to access object",
            Need::Administrator => "Not administrator user",
        }
    }
}

/// Checks the request's credentials and that the user has what `need` asks.
pub fn authorize<A: Authenticator + ?Sized>(
    auth: &Authorization,
    peer: &SocketAddr,
    store: &A,
    need: Need,
) -> Result<Principal, ApiError> {
    let (user, pass) = match auth {
        Authorization::None => return Err(ApiError::no_credentials()),
        Authorization::Other => return Err(ApiError::login_failed()),
        Authorization::Basic { user, pass } => (user, pass),
    };
    let tags = match store.authenticate(user, pass, peer) {
        Ok(tags) => tags,
        Err(AuthError::LoginFailed) => return Err(ApiError::login_failed()),
        Err(AuthError::NotLoopback) => {
            let mut e = ApiError::login_failed();
            e.body = Some((
                "not_authorized".into(),
                "User can only log in via localhost".into(),
            ));
            return Err(e);
        }
    };
    if !need.satisfied_by(tags) {
        return Err(ApiError::not_authorised(need.refusal()));
    }
    Ok(Principal {
        user: user.clone(),
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::status::Status;

    /// The users of the recording: guest (administrator, loopback only), mgmt, mon, notag.
    struct Users;

    impl Authenticator for Users {
        fn authenticate(
            &self,
            user: &str,
            pass: &str,
            peer: &SocketAddr,
        ) -> Result<Tags, AuthError> {
            let (want, tags) = match user {
                "guest" if !peer.ip().is_loopback() => return Err(AuthError::NotLoopback),
                "guest" => ("guest", "administrator"),
                "mgmt" => ("pw", "management"),
                "mon" => ("pw", "monitoring"),
                "notag" => ("pw", ""),
                _ => return Err(AuthError::LoginFailed),
            };
            if pass != want {
                return Err(AuthError::LoginFailed);
            }
            Ok(Tags::parse(tags))
        }
    }

    fn basic(user: &str, pass: &str) -> Authorization {
        Authorization::Basic {
            user: user.into(),
            pass: pass.into(),
        }
    }

    fn check(auth: Authorization, need: Need) -> (u16, bool, Option<String>) {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        match authorize(&auth, &peer, &Users, need) {
            Ok(_) => (200, false, None),
            Err(e) => (
                e.status.code(),
                e.www_authenticate,
                e.body.map(|(err, reason)| format!("{err}: {reason}")),
            ),
        }
    }

    /// The answers RabbitMQ 3.10 gave for each kind of caller (responses.txt).
    #[test]
    fn answers_like_rabbitmq() {
        use Need::*;
        assert_eq!(check(Authorization::None, Management), (401, true, None));
        let failed = Some("not_authorized: Login failed".to_string());
        assert_eq!(
            check(basic("guest", "bad"), Management),
            (401, true, failed.clone())
        );
        assert_eq!(
            check(basic("nobody", "pw"), Management),
            (401, true, failed.clone())
        );
        assert_eq!(check(Authorization::Other, Management), (401, true, failed));
        let no = |r: &str| (401, false, Some(format!("not_authorised: {r}")));
        assert_eq!(
            check(basic("notag", "pw"), Management),
            no("Not management user")
        );
        assert_eq!(
            check(basic("mgmt", "pw"), Administrator),
            no("Not administrator user")
        );
        assert_eq!(check(basic("mgmt", "pw"), Monitor), no("Not monitor user"));
        assert_eq!(
            check(basic("mon", "pw"), Administrator),
            no("Not administrator user")
        );
        assert_eq!(
            check(basic("mgmt", "pw"), Policymaker),
            no("User not authorised to access object")
        );
        assert_eq!(check(basic("mon", "pw"), Monitor).0, 200);
        assert_eq!(check(basic("guest", "guest"), Administrator).0, 200);
    }

    /// guest from a non-loopback address is refused by the store's rule.
    #[test]
    fn loopback_only_user() {
        let peer: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let e = authorize(&basic("guest", "guest"), &peer, &Users, Need::Management).unwrap_err();
        assert_eq!(e.status, Status::UNAUTHORIZED);
        assert!(e.www_authenticate);
    }

    /// Tags parse from either separator and list back in RabbitMQ's order.
    #[test]
    fn tags() {
        let t = Tags::parse("monitoring, administrator,unknown");
        assert_eq!(
            t.names().collect::<Vec<_>>(),
            ["administrator", "monitoring"]
        );
        assert_eq!(Tags::parse("").names().count(), 0);
    }
}

//! Users, password hashes and vhost access.
//!
//! Passwords are stored as RabbitMQ stores them (`rabbit_password_hashing_sha256`): base64 of
//! a 4-byte random salt followed by SHA-256(salt ++ password). Hashes made by
//! `rabbitmqctl export_definitions` can therefore be pasted into ferromq's config, and
//! `ferromq hash-password` makes new ones. Plain passwords never touch disk.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use parking_lot::RwLock;

use crate::error::{AuthError, CoreError};

const SALT_BYTES: usize = 4;

/// A user as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// `base64(salt ++ sha256(salt ++ password))`.
    pub password_hash: String,
    /// Vhosts the user may open; `["*"]` for all.
    pub vhosts: Vec<String>,
    /// Tags such as `administrator` (used by the admin API).
    pub tags: Vec<String>,
    /// The user may connect only from a loopback address.
    pub loopback_only: bool,
}

/// An authenticated user, as the adapters carry it around: every connection holds one,
/// so the user's [`Identity`] is shared by all of them (one per user record; a clone is a
/// reference count), not copied at each login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal(Arc<Identity>);

/// Who a [`Principal`] is.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    /// Login name.
    pub name: String,
    vhosts: Vec<String>,
    /// Tags such as `administrator`.
    pub tags: Vec<String>,
}

impl Deref for Principal {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.0
    }
}

impl Identity {
    /// Whether this user may open `vhost`.
    pub fn may_open(&self, vhost: &str) -> bool {
        self.vhosts.iter().any(|v| v == "*" || v == vhost)
    }
}

/// The remote end of a connection as its listener knows it.
///
/// `verified_user` is a user name the transport has already proven, such as the subject
/// of a TLS client certificate checked against the configured CA. A protocol uses it
/// only when the client sends no credentials of its own (STOMP without `login`, MQTT
/// without a username, AMQP's `EXTERNAL` mechanism), as RabbitMQ's `ssl_cert_login`
/// does; the user must still exist in the user database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// The client's address; `None` for in-process callers.
    pub addr: Option<SocketAddr>,
    /// A user name proven by the transport.
    pub verified_user: Option<String>,
}

impl Peer {
    /// The client's IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.addr.map(|a| a.ip())
    }
}

impl From<Option<SocketAddr>> for Peer {
    fn from(addr: Option<SocketAddr>) -> Self {
        Peer {
            addr,
            verified_user: None,
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Some(addr).into()
    }
}

/// Hashes `password` with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::getrandom(&mut salt).expect("the OS random source is available");
    hash_with_salt(&salt, password)
}

fn hash_with_salt(salt: &[u8], password: &str) -> String {
    let digest = Sha256::new()
        .chain_update(salt)
        .chain_update(password.as_bytes())
        .finalize();
    let mut raw = Vec::with_capacity(salt.len() + digest.len());
    raw.extend_from_slice(salt);
    raw.extend_from_slice(&digest);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Checks `password` against a stored hash in constant time for hashes of equal length.
pub fn verify_password(stored: &str, password: &str) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(stored) else {
        return false;
    };
    if raw.len() != SALT_BYTES + 32 {
        return false;
    }
    let digest = Sha256::new()
        .chain_update(&raw[..SALT_BYTES])
        .chain_update(password.as_bytes())
        .finalize();
    raw[SALT_BYTES..]
        .iter()
        .zip(digest.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The user database: the configured users, and those made at run time
/// ([`Broker::put_user`](crate::Broker::put_user)), which are journaled.
#[derive(Debug, Default)]
pub struct Users {
    by_name: RwLock<HashMap<String, User>>,
    /// Names from the configuration (or the default `guest`): not changed at run time.
    configured: HashSet<String>,
    allow_anonymous: bool,
}

/// A user record and the principal its logins get.
#[derive(Debug)]
struct User {
    record: UserRecord,
    principal: Principal,
}

impl User {
    fn new(record: UserRecord) -> Self {
        let principal = Principal(Arc::new(Identity {
            name: record.name.clone(),
            vhosts: record.vhosts.clone(),
            tags: record.tags.clone(),
        }));
        User { record, principal }
    }
}

impl Users {
    /// Users from the given records; when `records` is empty, the default `guest`/`guest`
    /// user (all vhosts, loopback only) exists, as on a fresh RabbitMQ.
    pub fn new(records: Vec<UserRecord>, allow_anonymous: bool) -> Self {
        let mut records = records;
        if records.is_empty() {
            records.push(UserRecord {
                name: "guest".into(),
                password_hash: hash_password("guest"),
                vhosts: vec!["*".into()],
                tags: vec!["administrator".into()],
                loopback_only: true,
            });
        }
        Self {
            configured: records.iter().map(|u| u.name.clone()).collect(),
            by_name: RwLock::new(
                records
                    .into_iter()
                    .map(|u| (u.name.clone(), User::new(u)))
                    .collect(),
            ),
            allow_anonymous,
        }
    }

    /// A user by name.
    pub fn get(&self, name: &str) -> Option<UserRecord> {
        self.by_name.read().get(name).map(|u| u.record.clone())
    }

    /// Every user's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.read().keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// True if `name` comes from the configuration.
    pub fn is_configured(&self, name: &str) -> bool {
        self.configured.contains(name)
    }

    /// Creates or replaces a run-time user. Configured users are refused: the
    /// configuration file stays their source of truth.
    pub(crate) fn put(&self, record: UserRecord) -> Result<(), CoreError> {
        if record.name.is_empty() || record.name.len() > 255 {
            return Err(CoreError::InvalidArgument(
                "a user name has 1 to 255 bytes".into(),
            ));
        }
        let hash_ok = base64::engine::general_purpose::STANDARD
            .decode(&record.password_hash)
            .is_ok_and(|raw| raw.len() == SALT_BYTES + 32);
        if !hash_ok {
            return Err(CoreError::InvalidArgument(
                "password_hash is not base64(4-byte salt ++ sha256(salt ++ password))".into(),
            ));
        }
        self.refuse_configured(&record.name)?;
        self.by_name
            .write()
            .insert(record.name.clone(), User::new(record));
        Ok(())
    }

    /// Deletes a run-time user; false if there is none of that name.
    pub(crate) fn remove(&self, name: &str) -> Result<bool, CoreError> {
        self.refuse_configured(name)?;
        Ok(self.by_name.write().remove(name).is_some())
    }

    /// Takes back a journaled user at start; one whose name is configured now is left out.
    pub(crate) fn restore(&self, record: UserRecord) -> bool {
        if self.configured.contains(&record.name) {
            return false;
        }
        self.by_name
            .write()
            .insert(record.name.clone(), User::new(record));
        true
    }

    fn refuse_configured(&self, name: &str) -> Result<(), CoreError> {
        if self.configured.contains(name) {
            return Err(CoreError::PreconditionFailed(format!(
                "user '{name}' is defined in the configuration; change it there"
            )));
        }
        Ok(())
    }

    /// Checks a login. `peer` is the client's address, `None` for in-process callers.
    pub fn authenticate(
        &self,
        user: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let users = self.by_name.read();
        let Some(u) = users.get(user) else {
            return Err(AuthError::BadCredentials);
        };
        if !verify_password(&u.record.password_hash, password) {
            return Err(AuthError::BadCredentials);
        }
        self.admit(u, peer)
    }

    /// A client that sent no credentials at all (MQTT without a username): admitted as
    /// `guest` from loopback when anonymous access is allowed.
    pub fn authenticate_anonymous(&self, peer: Option<IpAddr>) -> Result<Principal, AuthError> {
        if !self.allow_anonymous {
            return Err(AuthError::AnonymousRefused);
        }
        let users = self.by_name.read();
        let u = users.get("guest").ok_or(AuthError::AnonymousRefused)?;
        self.admit(u, peer)
    }

    /// A user whose identity the transport proved (a TLS client certificate): no
    /// password, but the user must exist (else `BadCredentials`) and the loopback rule
    /// still applies.
    pub fn authenticate_verified(
        &self,
        user: &str,
        peer: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let users = self.by_name.read();
        let Some(u) = users.get(user) else {
            return Err(AuthError::BadCredentials);
        };
        self.admit(u, peer)
    }

    fn admit(&self, u: &User, peer: Option<IpAddr>) -> Result<Principal, AuthError> {
        if u.record.loopback_only && !peer.is_none_or(|ip| ip.is_loopback()) {
            return Err(AuthError::LoopbackOnly(u.record.name.clone()));
        }
        Ok(u.principal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_hash_format_verifies() {
        // Made with RabbitMQ's algorithm: salt 0x908DC60A, password "test12".
        let stored = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
        assert!(verify_password(stored, "test12"));
        assert!(!verify_password(stored, "test13"));
        let fresh = hash_password("s3cret");
        assert!(verify_password(&fresh, "s3cret"));
        assert!(!verify_password(&fresh, "s3cre"));
        assert!(!verify_password("not base64!", "x"));
    }

    #[test]
    fn verified_users_must_exist_and_keep_the_loopback_rule() {
        let users = Users::new(vec![], true);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            users.authenticate_verified("guest", Some(lo)).unwrap().name,
            "guest"
        );
        assert!(matches!(
            users.authenticate_verified("guest", Some(remote)),
            Err(AuthError::LoopbackOnly(_))
        ));
        assert!(matches!(
            users.authenticate_verified("CN=mallory", Some(lo)),
            Err(AuthError::BadCredentials)
        ));
    }

    #[test]
    fn guest_is_loopback_only() {
        let users = Users::new(vec![], true);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(users.authenticate("guest", "guest", Some(lo)).is_ok());
        assert_eq!(
            users.authenticate("guest", "guest", Some(remote)),
            Err(AuthError::LoopbackOnly("guest".into()))
        );
        assert_eq!(
            users.authenticate("guest", "nope", Some(lo)),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            users.authenticate("nobody", "guest", Some(lo)),
            Err(AuthError::BadCredentials)
        );
        assert!(users.authenticate_anonymous(Some(lo)).is_ok());
        assert!(Users::new(vec![], false)
            .authenticate_anonymous(Some(lo))
            .is_err());
    }

    #[test]
    fn vhost_access() {
        let users = Users::new(
            vec![UserRecord {
                name: "app".into(),
                password_hash: hash_password("pw"),
                vhosts: vec!["/prod".into()],
                tags: vec![],
                loopback_only: false,
            }],
            false,
        );
        let p = users
            .authenticate("app", "pw", Some("10.0.0.1".parse().unwrap()))
            .unwrap();
        assert!(p.may_open("/prod"));
        assert!(!p.may_open("/"));
        assert!(
            users.authenticate("guest", "guest", None).is_err(),
            "guest only exists by default"
        );
    }
}

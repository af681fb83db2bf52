//! Who may do what: keys (admin, record, search), who a client is (its address, or the one a
//! trusted proxy forwards), and per-client rate limits.
//!
//! Keys follow the Typesense / Meilisearch model, kept simple: a bearer token in
//! `Authorization`. Only a SHA-256 digest of each key is held, and a token is compared with
//! every key's digest in constant time, so neither a key nor how much of it matched leaks
//! through timing; a key is never logged (its `Debug` says `Key(..)`).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// A secret that authorises requests: held as its SHA-256 digest.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key: at least [`MIN_KEY_BYTES`] characters, printable ASCII without spaces (it
    /// travels in a header). The error names the rule, never the key.
    pub fn new(secret: &str) -> Result<Key, String> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(format!(
                "a key must be at least {MIN_KEY_BYTES} characters, got {}",
                secret.len()
            ));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a key must be printable ASCII without spaces".into());
        }
        Ok(Key(Sha256::digest(secret.as_bytes()).into()))
    }
}

/// What a request's key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A search key: completions and anonymous searches.
    Search,
    /// A record key: trusted ingestion of searches (counts, times, users).
    Record,
    /// The admin key: every route.
    Admin,
}

/// The keys a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// The admin key: `/admin/*` (and everything a record key may do). None: admin routes off.
    pub admin: Option<Key>,
    /// Keys for trusted ingestion on `POST /v1/searches`.
    pub record: Vec<Key>,
    /// When any: completions and searches need a key (this, a record or the admin key).
    pub search: Vec<Key>,
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// `Authorization` is there but is not `Bearer <token>`, or the token is no key.
    Wrong,
}

impl Keys {
    /// The role of the bearer token of `headers`: None without `Authorization`.
    pub fn role(&self, headers: &HeaderMap) -> Result<Option<Role>, KeyError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = bearer(value).ok_or(KeyError::Wrong)?;
        let digest: [u8; 32] = Sha256::digest(token).into();
        // Every key is compared, whichever matches: the time does not say which.
        let is = |k: &Key| k.0.ct_eq(&digest);
        let admin = self
            .admin
            .iter()
            .fold(subtle::Choice::from(0), |a, k| a | is(k));
        let record = self
            .record
            .iter()
            .fold(subtle::Choice::from(0), |a, k| a | is(k));
        let search = self
            .search
            .iter()
            .fold(subtle::Choice::from(0), |a, k| a | is(k));
        let role = if bool::from(admin) {
            Role::Admin
        } else if bool::from(record) {
            Role::Record
        } else if bool::from(search) {
            Role::Search
        } else {
            return Err(KeyError::Wrong);
        };
        Ok(Some(role))
    }
}

/// The token of `Bearer <token>` (the scheme in any case).
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let v = value.as_bytes();
    let (scheme, token) = v.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Who a client is: its address, or with `trusted` proxies, the rightmost address of
/// `X-Forwarded-For` that is not one of them (a header from an untrusted peer is ignored, as
/// anyone can write one). An IPv6 client is its /64, the block one subscriber commonly holds.
pub fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer.to_canonical();
    if is_trusted(&client) {
        // Hops are appended left to right, each header after the one before: read from the
        // right (no allocation: this runs on every request).
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.to_str().map_or("", |s| s).rsplit(','));
        for hop in hops {
            match parse_hop(hop) {
                Some(ip) => client = ip,
                // Garbage: the last good hop stands (a client cannot hide behind the proxy).
                None => break,
            }
            if !is_trusted(&client) {
                break;
            }
        }
    }
    match client {
        IpAddr::V6(v6) => {
            let block = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(block))
        }
        v4 => v4,
    }
}

/// One address of `X-Forwarded-For`: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// A proxy to trust: a CIDR block, or one address (a block of one).
pub fn trusted_proxy(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("a trusted proxy is an address or a CIDR block, got {text:?}"))
}

/// A rate: `per_minute` requests a minute on average, bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests a minute, sustained (> 0).
    pub per_minute: f64,
    /// Requests at once after a quiet spell (>= 1).
    pub burst: u32,
}

impl Rate {
    /// Checks the rate (`name` for the message).
    pub fn check(&self, name: &str) -> Result<(), String> {
        if !(self.per_minute > 0.0 && self.per_minute.is_finite()) {
            return Err(format!(
                "{name} must be a positive number a minute, got {}",
                self.per_minute
            ));
        }
        if self.burst == 0 {
            return Err(format!("the burst of {name} must be at least 1"));
        }
        Ok(())
    }
}

/// Why a [`Limiter`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the client's budget now: this long until it may go on (for `Retry-After`).
    Wait(Duration),
    /// More at once than a burst allows: never fits, however long the client waits.
    TooMany {
        /// The most a client may make at once.
        burst: u32,
    },
}

/// Per-client token buckets (GCRA, from the governor crate).
pub struct Limiter {
    inner: DefaultKeyedRateLimiter<IpAddr>,
    burst: u32,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limiter({} clients)", self.inner.len())
    }
}

impl Limiter {
    /// Buckets of `rate` (checked by [`Rate::check`]).
    pub fn new(rate: Rate) -> Limiter {
        let period = Duration::from_secs_f64(60.0 / rate.per_minute).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(rate.burst).expect("checked"));
        Limiter {
            inner: RateLimiter::keyed(quota),
            burst: rate.burst,
        }
    }

    /// Ok when `client` may go on; else why not.
    pub fn check(&self, client: IpAddr) -> Result<(), Refused> {
        self.check_n(client, 1)
    }

    /// As [`Limiter::check`] for `n` requests at once.
    pub fn check_n(&self, client: IpAddr, n: usize) -> Result<(), Refused> {
        let too_many = Refused::TooMany { burst: self.burst };
        let n =
            NonZeroU32::new(u32::try_from(n.max(1)).map_err(|_| too_many)?).expect("at least 1");
        match self.inner.check_key_n(&client, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refused::Wait(
                not_until.wait_time_from(DefaultClock::default().now()),
            )),
            Err(_) => Err(too_many),
        }
    }

    /// Forgets the clients whose buckets are full again (memory stays bounded by the clients
    /// of the last minutes).
    pub fn sweep(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop_from_a_trusted_peer_only() {
        let proxies: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let h = headers(&["198.51.100.9, 203.0.113.7", "10.1.2.3"]);
        assert_eq!(client_of(ip("127.0.0.1"), &h, &proxies), ip("203.0.113.7"));
        // From an untrusted peer the header says nothing.
        assert_eq!(client_of(ip("192.0.2.1"), &h, &proxies), ip("192.0.2.1"));
        assert_eq!(client_of(ip("127.0.0.1"), &h, &[]), ip("127.0.0.1"));
        // Garbage or nothing after trusted hops: the last good hop.
        let h = headers(&["203.0.113.7, nonsense, 10.0.0.1"]);
        assert_eq!(client_of(ip("127.0.0.1"), &h, &proxies), ip("10.0.0.1"));
        assert_eq!(
            client_of(ip("127.0.0.1"), &headers(&[]), &proxies),
            ip("127.0.0.1")
        );
        // Ports, brackets, IPv4 in IPv6; IPv6 clients by /64.
        let h = headers(&["[2001:db8:1:2:3:4:5:6]:443"]);
        assert_eq!(
            client_of(ip("127.0.0.1"), &h, &proxies),
            ip("2001:db8:1:2::")
        );
        let h = headers(&["203.0.113.7:5555"]);
        assert_eq!(
            client_of(ip("::ffff:127.0.0.1"), &h, &proxies),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn keys_give_their_role_and_nothing_else() {
        let keys = Keys {
            admin: Some(Key::new("admin-key-0123456789").unwrap()),
            record: vec![Key::new("record-key-0123456789").unwrap()],
            search: vec![],
        };
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                axum::http::header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
            keys.role(&h)
        };
        assert_eq!(keys.role(&HeaderMap::new()), Ok(None));
        assert_eq!(with("Bearer admin-key-0123456789"), Ok(Some(Role::Admin)));
        assert_eq!(with("bearer record-key-0123456789"), Ok(Some(Role::Record)));
        for wrong in [
            "Bearer admin-key-012345678",
            "Basic admin-key-0123456789",
            "Bearer ",
            "x",
        ] {
            assert_eq!(with(wrong), Err(KeyError::Wrong), "{wrong}");
        }
        assert!(Key::new("short").is_err());
        assert!(Key::new("has a space in it ok").is_err());
        assert_eq!(format!("{:?}", keys.admin), "Some(Key(..))");
    }

    #[test]
    fn a_client_past_its_burst_waits_and_others_do_not() {
        let limiter = Limiter::new(Rate {
            per_minute: 60.0,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(limiter.check(ip("203.0.113.1")).is_ok());
        }
        let Err(Refused::Wait(wait)) = limiter.check(ip("203.0.113.1")) else {
            panic!("a fourth request at once is not told to wait");
        };
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check(ip("203.0.113.2")).is_ok());
        // More at once than a burst never fits, and costs nothing.
        let too_many = Refused::TooMany { burst: 3 };
        assert_eq!(limiter.check_n(ip("203.0.113.3"), 4), Err(too_many));
        assert_eq!(limiter.check_n(ip("203.0.113.3"), 3), Ok(()));
    }

    proptest! {
        /// Whatever a client writes into the header, the client found is the peer or an address
        /// the header holds, and a peer that is no proxy is always itself.
        #[test]
        fn forged_headers_never_make_an_untrusted_peer_someone_else(
            hops in prop::collection::vec("[0-9a-f.:\\[\\], ]{0,20}", 0..4),
            peer in any::<[u8; 4]>(),
        ) {
            let mut h = HeaderMap::new();
            for v in &hops {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.append("x-forwarded-for", v);
                }
            }
            let peer = IpAddr::from(peer);
            let proxies: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
            let got = client_of(peer, &h, &proxies);
            if !peer.is_loopback() {
                prop_assert_eq!(got, peer);
            }
        }
    }
}

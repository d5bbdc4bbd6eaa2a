//! Failed-login throttling, per client address and per account (tenant and email): a few
//! free failures, then a lock-out that doubles with each further failure, up to a cap.
//!
//! [`LoginThrottle`] is the policy; where the counts live is an [`AttemptStore`]: this
//! process's memory ([`MemoryStore`]: at most `LOGIN_THROTTLE_CAPACITY` keys, each
//! forgotten `LOGIN_FAILURE_WINDOW` after its last failure), or Redis when `REDIS_URL` is
//! set ([`RedisStore`]), so that every instance counts the same failures and a guesser
//! cannot spread guesses across instances. While Redis is down the Redis store counts in
//! memory instead, per instance.
//! Login asks [`LoginThrottle::check`] before any argon2 work, so a locked-out attempt
//! costs a map lookup and is refused with 429 `too_many_attempts` and `Retry-After`; it
//! then reports each failure ([`LoginThrottle::failed`]) and success
//! ([`LoginThrottle::succeeded`]).
//!
//! What it must never do is tell whether an account exists: the account key is the tenant
//! as named and the normalised email, counted whether or not such a tenant or user exists,
//! so a lock-out looks the same for both. A refusal is not a failure — it neither counts
//! nor extends a lock-out — so the account's owner gets in once the lock-out ends, while a
//! guesser gets one try per (doubling) lock-out. A success clears its account's count but
//! not its client's, so one valid account does not buy an attacker fresh guesses at others.
//!
//! A refusal is held up to a second before it is answered (at most 1024 at once; beyond
//! that they are answered at once): a client that ignores `Retry-After` and retries at once
//! then sends one attempt a second per connection instead of thousands, and the flood's
//! cost to everyone else stays small.
//!
//! Keys are SHA-256 digests of what they name: the store holds no email addresses, and
//! every entry has the same small size.

use std::{
    future::Future,
    net::{IpAddr, Ipv6Addr},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::{config::Config, error::Error, shared::RedisLink};

/// The longest a refusal is held before it is answered.
const REFUSAL_DELAY: Duration = Duration::from_secs(1);
/// The most refusals held at once; the hold spares the server a busy loop, it must not
/// become a queue of its own.
const MAX_HELD_REFUSALS: usize = 1024;

/// What a store's operation returns: boxed so the store can be chosen at start-up.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// What a throttle key counts the failures of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// One client address (an IPv6 /64).
    Client,
    /// One tenant and email.
    Account,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Client => "client",
            KeyKind::Account => "account",
        }
    }
}

/// Whose failures are counted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThrottleKey {
    kind: KeyKind,
    digest: [u8; 32],
}

impl ThrottleKey {
    /// The client at `address`. An IPv6 client is counted by its /64, the smallest block a
    /// single site is given, so rotating through one's own addresses buys nothing; an
    /// IPv4-mapped address counts as the IPv4 one.
    pub fn client(address: IpAddr) -> Self {
        let address = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(
                    u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
                )),
            },
            v4 => v4,
        };
        Self::of(KeyKind::Client, &[address.to_string().as_bytes()])
    }

    /// The account `email` in `tenant` (a resolved tenant id, or the reference as given
    /// when no tenant has it). The email is normalised as user emails are (trimmed,
    /// lower-case), whether or not it is a valid address.
    pub fn account(tenant: &str, email: &str) -> Self {
        let email = email.trim().to_lowercase();
        Self::of(KeyKind::Account, &[tenant.as_bytes(), email.as_bytes()])
    }

    fn of(kind: KeyKind, parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(kind.as_str());
        for part in parts {
            // Length-prefixed, so no two different key parts can run together alike.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self {
            kind,
            digest: hasher.finalize().into(),
        }
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key as a store names it.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// How many failures are free and how lock-outs grow, for one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub free_failures: u32,
    /// The first lock-out; each failure after it doubles the next.
    pub base: Duration,
    pub max: Duration,
}

impl Policy {
    /// The lock-out that the `failures`-th failure in a row starts, if any.
    pub fn lockout_after(&self, failures: u32) -> Option<Duration> {
        let doublings = failures.checked_sub(self.free_failures)?.checked_sub(1)?;
        let lockout = 2u32
            .checked_pow(doublings)
            .and_then(|factor| self.base.checked_mul(factor))
            .unwrap_or(self.max);
        Some(lockout.min(self.max))
    }
}

/// Where failure counts and lock-outs live. Each operation is atomic per key.
pub trait AttemptStore: Send + Sync {
    /// How much longer `key` is locked out, if it is.
    fn locked_for(&self, key: ThrottleKey) -> StoreFuture<'_, Option<Duration>>;
    /// Counts one more failure for `key` and starts the lock-out `policy` gives that
    /// count, if any, in one step; returns the lock-out started.
    fn record_failure(&self, key: ThrottleKey, policy: Policy)
    -> StoreFuture<'_, Option<Duration>>;
    /// Forgets `key`'s failures and lock-out.
    fn clear(&self, key: ThrottleKey) -> StoreFuture<'_, ()>;
}

/// Failure counts in this process's memory, bounded in keys and in time.
pub struct MemoryStore {
    entries: moka::sync::Cache<ThrottleKey, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
}

impl MemoryStore {
    /// At most `capacity` keys (beyond it moka evicts the least useful), each forgotten
    /// `window` after its last failure.
    pub fn new(capacity: u64, window: Duration) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(window)
                .build(),
        }
    }
}

impl AttemptStore for MemoryStore {
    fn locked_for(&self, key: ThrottleKey) -> StoreFuture<'_, Option<Duration>> {
        let now = Instant::now();
        let rest = self
            .entries
            .get(&key)
            .and_then(|entry| entry.locked_until)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|rest| !rest.is_zero());
        Box::pin(std::future::ready(Ok(rest)))
    }

    fn record_failure(
        &self,
        key: ThrottleKey,
        policy: Policy,
    ) -> StoreFuture<'_, Option<Duration>> {
        let now = Instant::now();
        let mut started = None;
        self.entries.entry(key).and_upsert_with(|existing| {
            let existing = existing.map(|entry| entry.into_value());
            let failures = existing.map_or(0, |e| e.failures).saturating_add(1);
            started = policy.lockout_after(failures);
            let locked_until = started
                .map(|lockout| now + lockout)
                .max(existing.and_then(|e| e.locked_until));
            Entry {
                failures,
                locked_until,
            }
        });
        Box::pin(std::future::ready(Ok(started)))
    }

    fn clear(&self, key: ThrottleKey) -> StoreFuture<'_, ()> {
        self.entries.invalidate(&key);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Failure counts in Redis, shared by every instance: per key, a failure counter that
/// lives `LOGIN_FAILURE_WINDOW` past its last failure and a lock-out key that lives as
/// long as the lock-out. Each operation is one round trip (a failure is one script, so
/// the count and the lock-out it starts move together). When Redis does not answer
/// (its breaker is open), the operation is done in this process's memory instead.
pub struct RedisStore {
    link: Arc<RedisLink>,
    window: Duration,
    record: redis::Script,
    fallback: MemoryStore,
}

/// `KEYS[1]` the failure counter, `KEYS[2]` the lock-out; `ARGV`: the window, the free
/// failures, the first and the longest lock-out (ms). Returns the lock-out started (ms),
/// or 0. `Policy::lockout_after`'s arithmetic.
const RECORD_FAILURE: &str = r#"
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local doublings = failures - tonumber(ARGV[2]) - 1
if doublings < 0 then return 0 end
local lockout = tonumber(ARGV[4])
if doublings < 40 then lockout = math.min(tonumber(ARGV[3]) * 2 ^ doublings, lockout) end
lockout = math.floor(lockout)
if redis.call('PTTL', KEYS[2]) < lockout then
  redis.call('SET', KEYS[2], 1, 'PX', lockout)
end
return lockout
"#;

impl RedisStore {
    pub fn new(link: Arc<RedisLink>, capacity: u64, window: Duration) -> Self {
        Self {
            link,
            window,
            record: redis::Script::new(RECORD_FAILURE),
            fallback: MemoryStore::new(capacity, window),
        }
    }

    fn keys(key: ThrottleKey) -> (String, String) {
        let digest: String = key.digest().iter().map(|b| format!("{b:02x}")).collect();
        (
            format!("tenantry:login:failures:{digest}"),
            format!("tenantry:login:lockout:{digest}"),
        )
    }
}

impl AttemptStore for RedisStore {
    fn locked_for(&self, key: ThrottleKey) -> StoreFuture<'_, Option<Duration>> {
        Box::pin(async move {
            let (_, lockout) = Self::keys(key);
            let rest = self
                .link
                .run(async |connection| {
                    redis::cmd("PTTL")
                        .arg(&lockout)
                        .query_async::<i64>(connection)
                        .await
                })
                .await;
            match rest {
                Some(ms) => Ok(u64::try_from(ms)
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)),
                None => self.fallback.locked_for(key).await,
            }
        })
    }

    fn record_failure(
        &self,
        key: ThrottleKey,
        policy: Policy,
    ) -> StoreFuture<'_, Option<Duration>> {
        Box::pin(async move {
            let (failures, lockout) = Self::keys(key);
            let mut invocation = self.record.prepare_invoke();
            invocation
                .key(&failures)
                .key(&lockout)
                .arg(self.window.as_millis() as u64)
                .arg(policy.free_failures)
                .arg(policy.base.as_millis() as u64)
                .arg(policy.max.as_millis() as u64);
            let started = self
                .link
                .run(async |connection| invocation.invoke_async::<u64>(connection).await)
                .await;
            match started {
                Some(0) => Ok(None),
                Some(ms) => Ok(Some(Duration::from_millis(ms))),
                None => self.fallback.record_failure(key, policy).await,
            }
        })
    }

    fn clear(&self, key: ThrottleKey) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (failures, lockout) = Self::keys(key);
            let cleared = self
                .link
                .run(async |connection| {
                    redis::cmd("DEL")
                        .arg(&failures)
                        .arg(&lockout)
                        .query_async::<i64>(connection)
                        .await
                })
                .await;
            // Forgotten here too: what was counted here while Redis was away.
            self.fallback.clear(key).await?;
            if cleared.is_none() {
                tracing::debug!("a login's failures stay counted in Redis (it is away)");
            }
            Ok(())
        })
    }
}

/// A key that is locked out, and for how much longer.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    key: ThrottleKey,
    rest: Duration,
}

/// The login throttle: the policy for each kind of key, over a store.
pub struct LoginThrottle {
    store: Box<dyn AttemptStore>,
    client: Policy,
    account: Policy,
    refusal_delay: Duration,
    held: Semaphore,
}

impl LoginThrottle {
    pub fn new(store: Box<dyn AttemptStore>, client: Policy, account: Policy) -> Self {
        Self {
            store,
            client,
            account,
            refusal_delay: REFUSAL_DELAY,
            held: Semaphore::new(MAX_HELD_REFUSALS),
        }
    }

    /// The throttle `LOGIN_*` configures: in Redis when `redis` is given, in this
    /// process's memory otherwise.
    pub fn from_config(config: &Config, redis: Option<Arc<RedisLink>>) -> Self {
        let policy = |free_failures| Policy {
            free_failures,
            base: config.login_lockout_base,
            max: config.login_lockout_max,
        };
        let (capacity, window) = (config.login_throttle_capacity, config.login_failure_window);
        let store: Box<dyn AttemptStore> = match redis {
            Some(link) => Box::new(RedisStore::new(link, capacity, window)),
            None => Box::new(MemoryStore::new(capacity, window)),
        };
        Self::new(
            store,
            policy(config.login_client_free_failures),
            policy(config.login_account_free_failures),
        )
    }

    /// Refuses with 429 `too_many_attempts` while `key` is locked out (see [`Self::refuse`]).
    pub async fn check(&self, key: ThrottleKey) -> Result<(), Error> {
        match self.lockout(&[key]).await? {
            None => Ok(()),
            Some(lockout) => Err(self.refuse(lockout).await),
        }
    }

    /// The lock-out of the first of `keys` that is locked out, if any — without holding
    /// anything, for a caller that must let go of something first (a hashing slot).
    pub async fn lockout(&self, keys: &[ThrottleKey]) -> Result<Option<Lockout>, Error> {
        for &key in keys {
            if let Some(rest) = self.store.locked_for(key).await? {
                return Ok(Some(Lockout { key, rest }));
            }
        }
        Ok(None)
    }

    /// Counts a login attempt the throttle let through to the password check
    /// (`rate_limit_decisions_total{limit="login", decision="allowed"}`); its refusals are
    /// counted by [`Self::refuse`].
    pub fn admitted(&self) {
        metrics::counter!("rate_limit_decisions_total", "limit" => "login", "decision" => "allowed")
            .increment(1);
    }

    /// The 429 `too_many_attempts` for `lockout`, after holding it up to a second;
    /// `Retry-After` is the rest of the lock-out then, rounded up to whole seconds so a
    /// client that honours it is not refused again.
    pub async fn refuse(&self, lockout: Lockout) -> Error {
        metrics::counter!("login_throttled_total", "key" => lockout.key.kind().as_str())
            .increment(1);
        metrics::counter!("rate_limit_decisions_total", "limit" => "login", "decision" => "limited")
            .increment(1);
        let held = match self.held.try_acquire() {
            Ok(_permit) => {
                let hold = lockout.rest.min(self.refusal_delay);
                tokio::time::sleep(hold).await;
                hold
            }
            Err(_) => Duration::ZERO,
        };
        let rest = lockout.rest.saturating_sub(held);
        Error::too_many_attempts(Duration::from_secs(crate::error::whole_seconds(rest)))
    }

    /// Counts a failed login against each key; returns the longest lock-out it started.
    pub async fn failed(&self, keys: &[ThrottleKey]) -> Result<Option<Duration>, Error> {
        let mut longest = None;
        for &key in keys {
            let started = self.store.record_failure(key, self.policy(key)).await?;
            longest = longest.max(started);
        }
        Ok(longest)
    }

    /// A successful login: its account starts afresh.
    pub async fn succeeded(&self, account: ThrottleKey) -> Result<(), Error> {
        self.store.clear(account).await
    }

    fn policy(&self, key: ThrottleKey) -> Policy {
        match key.kind() {
            KeyKind::Client => self.client,
            KeyKind::Account => self.account,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const POLICY: Policy = Policy {
        free_failures: 2,
        base: Duration::from_secs(60),
        max: Duration::from_secs(3600),
    };

    /// A throttle that answers refusals at once (the hold is tested on its own).
    fn throttle() -> LoginThrottle {
        let mut throttle = LoginThrottle::new(
            Box::new(MemoryStore::new(1000, Duration::from_secs(7200))),
            Policy {
                free_failures: 4,
                ..POLICY
            },
            POLICY,
        );
        throttle.refusal_delay = Duration::ZERO;
        throttle
    }

    #[test]
    fn lockouts_start_after_the_free_failures_and_double_up_to_the_cap() {
        let lockouts: Vec<_> = (1..=10).map(|n| POLICY.lockout_after(n)).collect();
        let minutes = |m: u64| Some(Duration::from_secs(60 * m));
        assert_eq!(
            lockouts,
            [
                None,
                None,
                minutes(1),
                minutes(2),
                minutes(4),
                minutes(8),
                minutes(16),
                minutes(32),
                minutes(60),
                minutes(60)
            ]
        );
        assert_eq!(POLICY.lockout_after(u32::MAX), minutes(60), "no overflow");
    }

    #[test]
    fn clients_are_counted_by_address_and_ipv6_clients_by_their_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            ThrottleKey::client(ip("2001:db8:1:2:aaaa::1")),
            ThrottleKey::client(ip("2001:db8:1:2:bbbb::2")),
            "one /64"
        );
        assert_ne!(
            ThrottleKey::client(ip("2001:db8:1:2::1")),
            ThrottleKey::client(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ThrottleKey::client(ip("::ffff:203.0.113.7")),
            ThrottleKey::client(ip("203.0.113.7"))
        );
        assert_ne!(
            ThrottleKey::client(ip("203.0.113.7")),
            ThrottleKey::client(ip("203.0.113.8"))
        );
    }

    #[test]
    fn accounts_are_counted_by_tenant_and_normalised_email() {
        assert_eq!(
            ThrottleKey::account("acme", " Ada@Acme.TEST "),
            ThrottleKey::account("acme", "ada@acme.test")
        );
        assert_ne!(
            ThrottleKey::account("acme", "ada@acme.test"),
            ThrottleKey::account("other", "ada@acme.test")
        );
        assert_ne!(
            ThrottleKey::account("ab", "c"),
            ThrottleKey::account("a", "bc"),
            "parts do not run together"
        );
    }

    #[tokio::test]
    async fn a_key_locks_after_its_free_failures_and_a_success_clears_it() {
        let throttle = throttle();
        let account = ThrottleKey::account("acme", "ada@acme.test");
        let other = ThrottleKey::account("acme", "bob@acme.test");

        assert_eq!(throttle.failed(&[account]).await.unwrap(), None);
        assert!(throttle.check(account).await.is_ok(), "one free failure");
        let started = throttle.failed(&[account]).await.unwrap();
        assert_eq!(started, None, "two free failures");
        let started = throttle.failed(&[account]).await.unwrap();
        assert_eq!(started, Some(Duration::from_secs(60)), "the third locks");

        let refused = throttle.check(account).await.unwrap_err();
        assert_eq!(
            (refused.kind(), refused.code()),
            (ErrorKind::RateLimited, "too_many_attempts")
        );
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(60)));
        assert!(
            throttle.check(other).await.is_ok(),
            "another account is free"
        );

        throttle.succeeded(account).await.unwrap();
        assert!(
            throttle.check(account).await.is_ok(),
            "cleared by a success"
        );
        assert_eq!(
            throttle.failed(&[account]).await.unwrap(),
            None,
            "counted afresh"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_held_up_to_a_second_and_says_what_is_left() {
        let mut throttle = throttle();
        throttle.refusal_delay = REFUSAL_DELAY;
        let account = ThrottleKey::account("acme", "ada@acme.test");
        for _ in 0..3 {
            throttle.failed(&[account]).await.unwrap();
        }

        let began = tokio::time::Instant::now();
        let refused = throttle.check(account).await.unwrap_err();

        assert_eq!(
            began.elapsed(),
            REFUSAL_DELAY,
            "held for the delay (on tokio's paused clock)"
        );
        assert_eq!(
            refused.retry_after(),
            Some(Duration::from_secs(59)),
            "the rest of the 60-second lock-out after the hold, rounded up"
        );
    }

    #[tokio::test]
    async fn failures_are_forgotten_a_window_after_the_last_one() {
        let store = MemoryStore::new(1000, Duration::from_millis(100));
        let policy = Policy {
            free_failures: 1,
            ..POLICY
        };
        let key = ThrottleKey::account("acme", "ada@acme.test");
        assert_eq!(store.record_failure(key, policy).await.unwrap(), None);

        tokio::time::sleep(Duration::from_millis(400)).await;

        assert_eq!(
            store.record_failure(key, policy).await.unwrap(),
            None,
            "the first failure was forgotten, so this one is free again"
        );
        assert_eq!(
            store.record_failure(key, policy).await.unwrap(),
            Some(Duration::from_secs(60)),
            "within the window failures add up"
        );
    }

    #[tokio::test]
    async fn clients_and_accounts_follow_their_own_policies() {
        let throttle = throttle();
        let client = ThrottleKey::client("203.0.113.7".parse().unwrap());
        let mut started = Vec::new();
        for n in 0..5 {
            let account = ThrottleKey::account("acme", &format!("guess{n}@acme.test"));
            started.push(throttle.failed(&[client, account]).await.unwrap());
        }
        assert_eq!(
            started,
            [None, None, None, None, Some(Duration::from_secs(60))],
            "the client's fifth failure locks it; no single account failed enough"
        );
        assert!(throttle.check(client).await.is_err());
    }
}

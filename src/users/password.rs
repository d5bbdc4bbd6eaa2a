//! Human passwords: argon2id with the OWASP-recommended parameters (19 MiB, t=2, p=1 — the
//! argon2 crate's defaults), and the bound on computing them.
//!
//! Every argon2 computation of the process goes through one [`Passwords`]: a login's
//! verification (against the user's hash, or the dummy hash when there is no such user), a
//! new user's or tenant owner's password (chosen or generated), and the dummy hash made at
//! start-up. Nothing may call argon2 any other way, because the bound is what keeps login
//! from being a CPU and memory sink for anyone who can reach it:
//!
//! - **Slots.** At most `PASSWORD_HASH_CONCURRENCY` computations run at once (default: the
//!   CPUs less one), each on a hashing thread of its own so the async runtime never stalls.
//!   Those threads run at a lower priority than the rest of the process (nice 10): when the
//!   CPUs are contended — a flood of logins — the scheduler serves other tenants' requests
//!   first, and argon2 gets what is left; on an idle machine it runs at full speed. A caller first
//!   takes a [`Slot`]; at most `PASSWORD_HASH_QUEUE` callers wait for one, none longer than
//!   `PASSWORD_HASH_MAX_WAIT`, and anyone else is refused at once with
//!   [`Error::password_hashing_busy`] (503 with `Retry-After`). A slot is freed when its
//!   computation ends, even if its caller has gone away meanwhile.
//! - **Reused memory.** Each slot computes in one of at most as many 19 MiB buffers of
//!   [`Block`]s, allocated on first use and kept. argon2's own API allocates 19 MiB per
//!   call, and the allocator keeps what is freed in the arena of whichever blocking thread
//!   freed it, so resident memory grew with every thread that ever hashed (3 GB after 200
//!   failed logins). Here it stays at `PASSWORD_HASH_CONCURRENCY × 19 MiB`.
//! - **Verification** parses the PHC string, recomputes with the hash's own algorithm,
//!   version, parameters and salt into the slot's buffer, and compares in constant time.
//!   A stored hash that needs more memory than the buffer holds (parameters stronger than
//!   ours) is verified with argon2's allocating API — still inside its slot.
//!
//! Login must take the same time whether or not the user exists, so an unknown user is
//! verified against a dummy hash, a real hash of a random password.

use std::{
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, PasswordVerifier, Version,
    password_hash::{Output, ParamsString, SaltString},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    config::Config,
    error::Error,
    rule::{TextRule, text_schema},
};

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 128;

/// A password someone chooses (for a new user or a tenant's owner): its length is all
/// that is asked of it (NIST 800-63B: length, not composition rules).
pub const RULE: TextRule = TextRule {
    chars: MIN_LENGTH..=MAX_LENGTH,
    pattern: None,
    message: "must be 12-128 characters",
    example: "correct horse battery staple",
    secret: true,
};

/// The schema of a chosen password ([`RULE`]), for request fields that take one.
pub struct NewPassword;
text_schema!(NewPassword, "NewPassword", RULE);

/// What a caller refused for want of a slot is told to wait before retrying.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How much argon2 work may be in progress (`PASSWORD_HASH_*`).
#[derive(Debug, Clone, Copy)]
pub struct HashingLimits {
    /// Computations running at once (and 19 MiB buffers kept).
    pub concurrency: usize,
    /// Callers that may wait for a slot beyond those.
    pub queue: usize,
    /// The longest a caller waits for a slot.
    pub max_wait: Duration,
}

impl HashingLimits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            concurrency: config.password_hash_concurrency,
            queue: config.password_hash_queue,
            max_wait: config.password_hash_max_wait,
        }
    }
}

/// The process's argon2 computations, bounded (see the module documentation).
pub struct Passwords {
    pool: Arc<Pool>,
}

struct Pool {
    /// The parameters of every hash made here.
    params: Params,
    limits: HashingLimits,
    slots: Arc<Semaphore>,
    /// Callers waiting for a slot now.
    waiting: AtomicUsize,
    /// Buffers not in use. A buffer is made only when a slot holder finds none here, so
    /// there are never more than `limits.concurrency`.
    buffers: Mutex<Vec<Vec<Block>>>,
    /// What an unknown user's login is verified against (made through a slot at start-up).
    dummy_hash: OnceLock<String>,
    /// Where computations run: one thread per slot.
    workers: Workers,
}

/// The right to run one argon2 computation now; taken by [`Passwords::slot`] and spent by
/// [`Slot::hash`] or [`Slot::verify`].
pub struct Slot {
    pool: Arc<Pool>,
    permit: OwnedSemaphorePermit,
}

impl Passwords {
    /// A bounded hasher, with its dummy hash made through it.
    pub async fn new(limits: HashingLimits) -> anyhow::Result<Self> {
        let params = Params::new(
            Params::DEFAULT_M_COST,
            Params::DEFAULT_T_COST,
            Params::DEFAULT_P_COST,
            Some(Params::DEFAULT_OUTPUT_LEN),
        )
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        metrics::gauge!("password_hash_queue_capacity").set(limits.queue as f64);
        let passwords = Self {
            pool: Arc::new(Pool {
                params,
                limits,
                slots: Arc::new(Semaphore::new(limits.concurrency)),
                waiting: AtomicUsize::new(0),
                buffers: Mutex::new(Vec::with_capacity(limits.concurrency)),
                dummy_hash: OnceLock::new(),
                workers: Workers::start(limits.concurrency)?,
            }),
        };
        let dummy = passwords
            .hash(generate())
            .await
            .map_err(|e| anyhow::anyhow!("making the dummy password hash: {e}"))?;
        let _ = passwords.pool.dummy_hash.set(dummy);
        Ok(passwords)
    }

    /// Takes a hashing slot: at once when one is free, else after waiting in the queue;
    /// [`Error::password_hashing_busy`] when the queue is full or the wait too long.
    pub async fn slot(&self) -> Result<Slot, Error> {
        let pool = &self.pool;
        let busy = || {
            metrics::counter!("password_hashing_busy_total").increment(1);
            Error::password_hashing_busy(BUSY_RETRY_AFTER)
        };
        if let Ok(permit) = pool.slots.clone().try_acquire_owned() {
            return Ok(Slot {
                pool: pool.clone(),
                permit,
            });
        }
        let _waiter = Waiter::join(&pool.waiting, pool.limits.queue).ok_or_else(busy)?;
        let permit = tokio::time::timeout(pool.limits.max_wait, pool.slots.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        Ok(Slot {
            pool: pool.clone(),
            permit,
        })
    }

    /// Hashes a new password (takes a slot first).
    pub async fn hash(&self, password: SecretString) -> Result<String, Error> {
        self.slot().await?.hash(password).await
    }

    /// Verifies `password` against `hash`, or the dummy hash when there is none (takes a
    /// slot first). True only for a real, matching hash.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, Error> {
        self.slot().await?.verify(password, hash).await
    }
}

impl Slot {
    /// Hashes a new password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub async fn hash(self, password: SecretString) -> Result<String, Error> {
        self.run("hash", move |params, memory| {
            hash_into(params, memory, password.expose_secret().as_bytes())
        })
        .await?
        .map_err(Error::internal)
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is no user,
    /// so both paths cost one argon2 computation. True only for a real, matching hash.
    pub async fn verify(self, password: SecretString, hash: Option<String>) -> Result<bool, Error> {
        let real = hash.is_some();
        let hash = match hash {
            Some(hash) => hash,
            None => self
                .pool
                .dummy_hash
                .get()
                .cloned()
                .context("the dummy password hash is made at start-up")?,
        };
        let matches = self
            .run("verify", move |_, memory| {
                verify_in(memory, password.expose_secret().as_bytes(), &hash)
            })
            .await?;
        Ok(real && matches)
    }

    /// Runs `work` on a hashing thread with a buffer of the pool's, holding the slot until
    /// it ends — even when the caller stops waiting, so the bound holds.
    async fn run<T: Send + 'static>(
        self,
        computation: &'static str,
        work: impl FnOnce(&Params, &mut [Block]) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let Slot { pool, permit } = self;
        let workers = pool.workers.clone();
        let done = workers
            .run(move || {
                let _permit = permit;
                let mut memory = pool.take_buffer();
                let done = work(&pool.params, &mut memory);
                pool.give_back(memory);
                done
            })
            .await?;
        metrics::counter!("password_hash_computations_total", "computation" => computation)
            .increment(1);
        // Lets a test (and an operator at debug level) see which request ran argon2.
        tracing::debug!(computation, "argon2 computed");
        Ok(done)
    }
}

impl Pool {
    fn take_buffer(&self) -> Vec<Block> {
        let spare = self
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        spare.unwrap_or_else(|| vec![Block::new(); self.params.block_count()])
    }

    fn give_back(&self, memory: Vec<Block>) {
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(memory);
    }
}

/// How much less the hashing threads get of contended CPUs: nice 10 (a CFS weight of 110
/// against 1024 at nice 0), so a thread serving requests is preferred about nine to one.
/// Raising one's own niceness needs no privilege.
const HASHING_PRIORITY: u8 = 21;

/// A computation handed to a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// The threads argon2 runs on, one per slot (the slots' semaphore keeps jobs from
/// queueing here), at [`HASHING_PRIORITY`]. They end with the last [`Passwords`] handle.
#[derive(Clone)]
struct Workers {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Workers {
    fn start(count: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    let priority = ThreadPriorityValue::try_from(HASHING_PRIORITY)
                        .map(ThreadPriority::Crossplatform);
                    match priority.map(set_current_thread_priority) {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::warn!(
                            ?error,
                            "could not lower the priority of a password hashing thread"
                        ),
                        Err(error) => tracing::warn!(error, "hashing thread priority"),
                    }
                    loop {
                        // The lock is held only while waiting; the guard goes with the
                        // statement, before the job runs.
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = job else { return };
                        // A panicking computation must not take its thread with it.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .context("starting a password hashing thread")?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on a hashing thread and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| anyhow::anyhow!("the password hashing threads have stopped"))?;
        Ok(result.await.context("password hashing computation")?)
    }
}

/// A caller counted among those waiting for a slot, for as long as it waits (however the
/// wait ends, the caller's cancellation included).
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    /// Joins the queue unless `limit` callers already wait (`password_hash_queue_depth`
    /// follows it).
    fn join(waiting: &'a AtomicUsize, limit: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| {
                metrics::gauge!("password_hash_queue_depth").increment(1.0);
                Self(waiting)
            })
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("password_hash_queue_depth").decrement(1.0);
    }
}

/// argon2id of `password` with a fresh 16-byte salt, computed in `memory`.
fn hash_into(params: &Params, memory: &mut [Block], password: &[u8]) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut output, memory)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash`, recomputed in `memory` when it fits.
/// Anything unparseable is simply not a match.
fn verify_in(memory: &mut [Block], password: &[u8], hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return false;
    };
    let algorithm = Algorithm::try_from(parsed.algorithm);
    let version = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from);
    let (Ok(algorithm), Ok(version), Ok(params)) = (algorithm, version, Params::try_from(&parsed))
    else {
        return false;
    };
    if params.block_count() > memory.len() {
        // Stronger than the buffer holds: argon2's own verification, which allocates.
        return Argon2::default().verify_password(password, &parsed).is_ok();
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut computed = [0u8; Output::MAX_LENGTH];
    let computed = &mut computed[..expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut *computed, memory)
        .is_ok()
        && bool::from(computed.ct_eq(expected.as_bytes()))
}

/// A random password for an account created without one (shown once to its creator).
pub fn generate() -> SecretString {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

/// Checks a chosen password against [`RULE`].
pub fn validate(field: &str, password: &str) -> Result<(), Error> {
    if !RULE.fits(password) {
        return Err(Error::invalid(field, RULE.message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher;

    use super::*;
    use crate::error::ErrorKind;

    fn limits(concurrency: usize, queue: usize) -> HashingLimits {
        HashingLimits {
            concurrency,
            queue,
            max_wait: Duration::from_secs(30),
        }
    }

    /// A hash made by the argon2 crate's own API, with its default (our) parameters.
    fn standard_hash(password: &str) -> String {
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new(limits(1, 0)).await.unwrap();
        let hash = passwords
            .hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            passwords
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("wrong horse battery".into(), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn hashes_made_here_and_by_the_argon2_api_verify_each_other() {
        let passwords = Passwords::new(limits(1, 0)).await.unwrap();
        let ours = passwords
            .hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok(),
            "the argon2 API verifies a hash computed in a reused buffer: {ours}"
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong horse battery", &parsed)
                .is_err(),
            "and refuses the wrong password for it"
        );

        let theirs = standard_hash("correct horse battery");
        assert!(
            passwords
                .verify("correct horse battery".into(), Some(theirs.clone()))
                .await
                .unwrap(),
            "the reused buffer verifies a hash from the argon2 API: {theirs}"
        );
        assert!(
            !passwords
                .verify("wrong horse battery".into(), Some(theirs))
                .await
                .unwrap(),
            "and refuses the wrong password for it"
        );
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_still_verify() {
        let passwords = Passwords::new(limits(1, 0)).await.unwrap();
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        for (m, t, algorithm) in [
            (8 * 1024, 1, Algorithm::Argon2id),
            (19 * 1024, 3, Algorithm::Argon2i),
            // More memory than the buffer: verified with argon2's allocating API.
            (32 * 1024, 1, Algorithm::Argon2id),
        ] {
            let params = Params::new(m, t, 1, None).unwrap();
            let hash = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"correct horse battery", &salt)
                .unwrap()
                .to_string();
            assert!(
                passwords
                    .verify("correct horse battery".into(), Some(hash.clone()))
                    .await
                    .unwrap(),
                "{hash} verifies its password"
            );
            assert!(
                !passwords
                    .verify("wrong horse battery".into(), Some(hash.clone()))
                    .await
                    .unwrap(),
                "{hash} refuses another"
            );
        }
    }

    #[tokio::test]
    async fn garbage_instead_of_a_hash_never_verifies() {
        let passwords = Passwords::new(limits(1, 0)).await.unwrap();
        for garbage in ["", "not a hash", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA"] {
            assert!(
                !passwords
                    .verify("anything at all".into(), Some(garbage.to_owned()))
                    .await
                    .unwrap(),
                "{garbage:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_user_never_verifies() {
        let passwords = Passwords::new(limits(1, 0)).await.unwrap();
        assert!(
            !passwords
                .verify("anything at all".into(), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn beyond_the_slots_and_the_queue_a_caller_is_refused_as_busy() {
        // One slot, taken; nobody may wait.
        let passwords = Passwords::new(limits(1, 0)).await.unwrap();
        let held = passwords.slot().await.unwrap();

        let refused = passwords.slot().await.err().expect("no slot is free");

        assert_eq!(
            (refused.kind(), refused.code()),
            (ErrorKind::Unavailable, "password_hashing_busy")
        );
        assert_eq!(refused.retry_after(), Some(BUSY_RETRY_AFTER));
        drop(held);
        assert!(
            passwords.slot().await.is_ok(),
            "a freed slot is taken again"
        );
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_the_longest_wait() {
        let passwords = Passwords::new(HashingLimits {
            concurrency: 1,
            queue: 1,
            max_wait: Duration::from_millis(20),
        })
        .await
        .unwrap();
        let _held = passwords.slot().await.unwrap();

        let timed_out = passwords.slot().await.err().expect("the wait ends");

        assert_eq!(timed_out.code(), "password_hashing_busy");
        assert_eq!(
            passwords.pool.waiting.load(Ordering::Acquire),
            0,
            "a caller that gave up no longer counts as waiting"
        );
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_when_it_is_freed() {
        let passwords = Arc::new(Passwords::new(limits(1, 1)).await.unwrap());
        let held = passwords.slot().await.unwrap();
        let waiter = tokio::spawn({
            let passwords = passwords.clone();
            async move { passwords.slot().await.map(drop) }
        });
        for _ in 0..1000 {
            if passwords.pool.waiting.load(Ordering::Acquire) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            passwords.pool.waiting.load(Ordering::Acquire),
            1,
            "the second caller waits in the queue"
        );
        let third = passwords
            .slot()
            .await
            .err()
            .expect("the queue of one is full");
        assert_eq!(third.code(), "password_hashing_busy");

        drop(held);

        assert!(
            waiter.await.unwrap().is_ok(),
            "the waiter got the freed slot"
        );
    }

    #[tokio::test]
    async fn no_more_buffers_are_made_than_slots() {
        let passwords = Arc::new(Passwords::new(limits(2, 64)).await.unwrap());
        let hashes = hash_concurrently(passwords.clone(), 8).await;
        assert!(hashes.iter().all(Result::is_ok), "{hashes:?}");
        let buffers = passwords.pool.buffers.lock().unwrap().len();
        assert!(
            (1..=2).contains(&buffers),
            "two slots keep at most two buffers, got {buffers}"
        );
    }

    async fn hash_concurrently(passwords: Arc<Passwords>, n: usize) -> Vec<Result<String, Error>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let passwords = passwords.clone();
                tokio::spawn(async move { passwords.hash("correct horse battery".into()).await })
            })
            .collect();
        let mut hashes = Vec::new();
        for task in tasks {
            hashes.push(task.await.unwrap());
        }
        hashes
    }

    #[test]
    fn generated_passwords_are_long_enough() {
        assert!(validate("password", generate().expose_secret()).is_ok());
        assert!(validate("password", "short").is_err());
    }
}

//! argon2id password hashes (OWASP parameters: 19 MiB, 2 passes), computed
//! off the async workers, a bounded number at once: each takes 19 MiB, so
//! unbounded, a few hundred concurrent logins took a replica to 8 GB. Past
//! the bound a caller waits briefly, then is answered 503 OVERLOADED with
//! `Retry-After`. The hashes run on threads of their own, as many as the
//! bound: on tokio's blocking pool each new thread got a malloc arena of its
//! own that kept its 19 MiB, and RSS still reached 645 MB with two at once.

use std::{
    sync::{Arc, LazyLock, Mutex, mpsc},
    time::Duration,
};

use argon2::{
    Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use ticketing_domain::{Error, error::Resource};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// How long a refused caller is asked to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

type Work = Box<dyn FnOnce() + Send>;

/// Computes hashes, at most `concurrency` at once, on that many threads.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    max_wait: Duration,
    work: mpsc::Sender<Work>,
}

impl Passwords {
    pub fn new(concurrency: usize, max_wait: Duration) -> Passwords {
        let concurrency = concurrency.max(1);
        let (work, queue) = mpsc::channel::<Work>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..concurrency {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-{n}"))
                .spawn(move || {
                    // Ends when every `Passwords` clone (every sender) is gone.
                    while let Ok(job) = queue.lock().map_err(drop).and_then(|q| q.recv().map_err(drop)) {
                        job();
                    }
                })
                .expect("a password thread starts");
        }
        Passwords { permits: Arc::new(Semaphore::new(concurrency)), max_wait, work }
    }

    /// Runs `hashing` on a password thread once a turn is free.
    async fn run<T: Send + 'static>(&self, hashing: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
        let turn = self.turn().await?;
        let (answer, answered) = oneshot::channel();
        let job: Work = Box::new(move || {
            let _turn = turn;
            let _ = answer.send(hashing());
        });
        self.work.send(job).map_err(|_| Error::internal("the password threads are gone"))?;
        answered.await.map_err(Error::internal)
    }

    /// A turn to hash, or OVERLOADED after `max_wait`.
    async fn turn(&self) -> Result<OwnedSemaphorePermit, Error> {
        match tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(Error::internal(closed)),
            Err(_) => {
                metrics::counter!("ticketing_password_hash_refusals_total").increment(1);
                Err(Error::overloaded(
                    Resource::PasswordHashing,
                    "too many sign-ins at once, retry shortly",
                    RETRY_AFTER,
                ))
            }
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, Error> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await?
        .map_err(|e| Error::internal(e.to_string()))
    }

    /// Verifies against `stored`, or against a dummy hash when the account
    /// does not exist, so response time does not reveal which e-mails are
    /// registered.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Error> {
        self.run(move || {
            let exists = stored.is_some();
            let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
            let Ok(parsed) = PasswordHash::new(&stored) else { return false };
            Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && exists
        })
        .await
    }
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(b"no account has this password", &salt).map(|h| h.to_string()).unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    fn passwords() -> Passwords {
        Passwords::new(2, Duration::from_secs(30))
    }

    #[tokio::test]
    async fn hash_verifies_only_the_right_password() {
        let passwords = passwords();
        let stored = passwords.hash("correct horse battery".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(passwords.verify("correct horse battery".into(), Some(stored.clone())).await.unwrap());
        assert!(!passwords.verify("wrong horse battery".into(), Some(stored)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        assert!(!passwords().verify("no account has this password".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn past_the_bound_a_caller_is_told_to_come_back() {
        let passwords = Passwords::new(1, Duration::from_millis(10));
        // The only turn is taken (as by a hash in progress).
        let held = passwords.turn().await.unwrap();
        let refused = passwords.hash("correct horse battery".into()).await.unwrap_err();
        assert_eq!(refused.overloaded_resource(), Some(Resource::PasswordHashing));
        assert_eq!(refused.retry_after, Some(RETRY_AFTER));
        drop(held);
        assert!(passwords.hash("correct horse battery".into()).await.is_ok(), "the turn is free again");
    }
}

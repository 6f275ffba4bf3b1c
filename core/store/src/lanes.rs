//! Group commit for the hot paths (the gate's scans; a sale's new orders and
//! their reads of the event): requests that arrive while a call is in flight
//! are sent together as one statement — one round trip, one parse and one
//! commit for the lot.
//! A lane takes whatever has queued up (at least one request, never waiting
//! for more), so at low load every request goes alone, at once; under a rush
//! the per-statement and per-commit work is shared. What queues while a call
//! is in flight waits for it to land (up to `SPARE_AFTER`), so one call at a
//! time carries everything; the other lanes are spares. Two free-running
//! gate lanes at 4,000 scans/s sent 5.3 scans a call, half the calls
//! carrying one; waiting, ~9 (ci/bench checkin: Postgres 0.107-0.113 ms a
//! scan instead of 0.141-0.145; flash sale at 2,000 offered: p95 19-21 ms
//! instead of 26-28, Postgres 0.09-0.10 ms an order instead of 0.11).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use ticketing_domain::Error;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::{Database, StoreError};

/// A kind of request decided in batches by one database call.
pub trait Batch: Send + Sync + 'static {
    type Request: Send + 'static;
    type Answer: Send + 'static;
    /// Orders requests within a batch, so concurrent batches take row locks
    /// in the same order.
    type Key: Ord;

    /// Names the lanes in logs and in `ticketing_batch_size{lanes}`.
    const NAME: &'static str;
    /// Batches in flight at once at most: one normally, while the next
    /// gathers; the others are spares, for a call stuck on a row lock.
    const LANES: usize;
    /// Requests per batch at most.
    const MAX_BATCH: usize;

    fn key(request: &Self::Request) -> Self::Key;

    /// Decides the requests in one call, all or nothing: answer i is request
    /// i's. An error the database returns fails the whole batch, which then
    /// goes again one request at a time, so one bad request cannot fail its
    /// neighbours.
    fn decide(
        &self,
        db: &Database,
        requests: &[Self::Request],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, StoreError>> + Send;
}

/// Where a batch statement's row belongs: its request's 1-based number
/// (`WITH ORDINALITY`, the function's loop counter), checked against the
/// batch's size.
pub(crate) fn request_index(number: i64, requests: usize) -> Result<usize, StoreError> {
    usize::try_from(number - 1)
        .ok()
        .filter(|&index| index < requests)
        .ok_or_else(|| Error::internal(format!("a batch statement answered request {number} of {requests}")).into())
}

type Reply<B> = oneshot::Sender<Result<<B as Batch>::Answer, Error>>;
/// A request, where its answer goes, and when it was queued.
type Queued<B> = (<B as Batch>::Request, Reply<B>, Instant);

/// What the lanes of one kind share: the queue, and the calls in flight.
struct Shared<B: Batch> {
    receiver: Mutex<mpsc::Receiver<Queued<B>>>,
    in_flight: AtomicUsize,
    landed: Notify,
}

/// A call in flight, counted until it lands (or its task panics).
struct InFlight<'a, B: Batch>(&'a Shared<B>);

impl<'a, B: Batch> InFlight<'a, B> {
    fn start(shared: &'a Shared<B>) -> InFlight<'a, B> {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(shared)
    }
}

impl<B: Batch> Drop for InFlight<'_, B> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.landed.notify_waiters();
    }
}

/// Lanes deciding requests of one kind; cloning shares them.
pub struct Lanes<B: Batch> {
    sender: mpsc::Sender<Queued<B>>,
}

impl<B: Batch> Clone for Lanes<B> {
    fn clone(&self) -> Self {
        Lanes { sender: self.sender.clone() }
    }
}

impl<B: Batch> Lanes<B> {
    /// Starts `B::LANES` lanes of at most `B::MAX_BATCH` requests each
    /// (needs a tokio runtime); they stop when the last handle is dropped.
    pub fn start(db: Database, batch: B) -> Lanes<B> {
        let (sender, receiver) = mpsc::channel::<Queued<B>>(B::LANES * B::MAX_BATCH * 8);
        let shared =
            Arc::new(Shared { receiver: Mutex::new(receiver), in_flight: AtomicUsize::new(0), landed: Notify::new() });
        let batch = Arc::new(batch);
        for _ in 0..B::LANES {
            tokio::spawn(lane(db.clone(), batch.clone(), shared.clone()));
        }
        Lanes { sender }
    }

    /// Requests waiting for a lane (not counting those a lane has gathered).
    pub fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// Decides one request, in whatever batch it joins.
    pub async fn decide(&self, request: B::Request) -> Result<B::Answer, Error> {
        let stopped = || Error::internal(format!("the {} lanes stopped", B::NAME));
        let (reply, answer) = oneshot::channel();
        self.sender.send((request, reply, Instant::now())).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// How long what has gathered waits for the call in flight before a spare
/// lane sends it: well under the gate's 50 ms p99, and long past a healthy
/// call (1-5 ms under a rush).
const SPARE_AFTER: Duration = Duration::from_millis(10);

/// Takes whatever has queued (waiting for at least one request) and keeps
/// gathering until no call is in flight, the batch is full or `SPARE_AFTER`
/// runs out. Holding the receiver, so one lane gathers at a time, until its
/// call counts as in flight. `None` once the queue is closed and empty.
async fn gather<'a, B: Batch>(shared: &'a Shared<B>, queued: &mut Vec<Queued<B>>) -> Option<InFlight<'a, B>> {
    let mut receiver = shared.receiver.lock().await;
    if receiver.recv_many(queued, B::MAX_BATCH).await == 0 {
        return None;
    }
    gather_while_in_flight(shared, &mut receiver, queued).await;
    Some(InFlight::start(shared))
}

async fn gather_while_in_flight<B: Batch>(
    shared: &Shared<B>,
    receiver: &mut mpsc::Receiver<Queued<B>>,
    queued: &mut Vec<Queued<B>>,
) {
    let waited_out = tokio::time::sleep(SPARE_AFTER);
    tokio::pin!(waited_out);
    loop {
        let landed = shared.landed.notified();
        tokio::pin!(landed);
        // Registered before the count is read: a landing in between still wakes it.
        landed.as_mut().enable();
        if shared.in_flight.load(Ordering::Acquire) == 0 || queued.len() >= B::MAX_BATCH {
            return;
        }
        let room = B::MAX_BATCH - queued.len();
        tokio::select! {
            () = &mut landed => {}
            more = receiver.recv_many(queued, room) => if more == 0 { return },
            () = &mut waited_out => return,
        }
    }
}

async fn lane<B: Batch>(db: Database, batch: Arc<B>, shared: Arc<Shared<B>>) {
    // A request's time in a lane is its wait for a batch plus the batch's
    // call: timed apart, so a slow stage says which (a queue, or the database).
    let sizes = metrics::histogram!("ticketing_batch_size", "lanes" => B::NAME);
    let waits = metrics::histogram!("ticketing_batch_wait_seconds", "lanes" => B::NAME);
    let calls = metrics::histogram!("ticketing_batch_call_seconds", "lanes" => B::NAME);
    let mut queued = Vec::with_capacity(B::MAX_BATCH);
    while let Some(_in_flight) = gather(&shared, &mut queued).await {
        let sent = Instant::now();
        sizes.record(queued.len() as f64);
        queued.sort_by(|(a, ..), (b, ..)| B::key(a).cmp(&B::key(b)));
        let (requests, replies): (Vec<B::Request>, Vec<Reply<B>>) = queued
            .drain(..)
            .map(|(request, reply, queued_at)| {
                waits.record(sent.duration_since(queued_at).as_secs_f64());
                (request, reply)
            })
            .unzip();
        let decided = batch.decide(&db, &requests).await;
        calls.record(sent.elapsed().as_secs_f64());
        match decided {
            Ok(answers) if answers.len() == requests.len() => {
                for (answer, reply) in answers.into_iter().zip(replies) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(answers) => {
                let count = answers.len();
                for reply in replies {
                    let wrong = format!("{count} answers for {} {} requests", requests.len(), B::NAME);
                    let _ = reply.send(Err(Error::internal(wrong)));
                }
            }
            // The database refused the statement, maybe for one request's
            // sake: each goes again alone.
            Err(error) if requests.len() > 1 && error.is_refusal() => {
                tracing::warn!(%error, requests = requests.len(), lanes = B::NAME, "a batch failed; deciding its requests one by one");
                for (request, reply) in requests.into_iter().zip(replies) {
                    let alone = batch.decide(&db, std::slice::from_ref(&request)).await;
                    let answer = alone.map_err(Error::from).and_then(|answers| {
                        answers
                            .into_iter()
                            .next()
                            .ok_or_else(|| Error::internal(format!("no answer for a {} request", B::NAME)))
                    });
                    let _ = reply.send(answer);
                }
            }
            // A database that cannot be reached fails every request at once:
            // one by one, each would wait out the pool's timeout again.
            Err(error) => {
                let error = Error::from(error);
                for reply in replies {
                    let _ = reply.send(Err(error.reissue()));
                }
            }
        }
    }
}

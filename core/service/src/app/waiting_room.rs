//! The on-sale front door (API.md "On-sale front door"): a customer proves
//! work (ALTCHA) to join an event's queue, waits their turn, and is admitted
//! at the pace the organizer set; the admission is a signed token that
//! `CreateOrder` checks with no database or Redis call. The queue lives in
//! Redis (`ticketing_store::waiting_room`); the worker admits.

use std::time::Duration;

use altcha::{CreateChallengeOptions, VerifySolutionOptions};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use scoped_futures::ScopedFutureExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ticketing_domain::{
    Error, Reason,
    catalog::WaitingRoom,
    identity::{Principal, Role},
    waiting_room::{self as rules, QueueStatus},
};
use ticketing_proto::v1;
use ticketing_store::{
    redis::RedisError,
    waiting_room::{Joined, Pace, Queue, Solution, Standing},
};
use uuid::Uuid;

use crate::{
    AppState,
    app::{
        catalog,
        limits::{self, Limit},
    },
    auth::RequestContext,
    wire::{self, parse_id},
};

/// ALTCHA's v2 key derivation, each attempt PBKDF2 with this many rounds:
/// WebCrypto runs it natively in the browser.
const ALGORITHM: &str = "PBKDF2/SHA-256";
const PBKDF2_ROUNDS: u32 = 100;
/// A widget's value is a few hundred bytes; anything far larger is refused unread.
const MAX_SOLUTION_BYTES: usize = 4096;
/// The most entries one admission step lets in (a step every tick).
const MAX_ADMISSIONS_PER_STEP: u32 = 1000;
const JOIN_WINDOW: Duration = Duration::from_secs(60);
const ADMISSION_AUDIENCE: &str = "ticketing-admission";

ticketing_domain::vocabulary! {
    /// Why a join's proof-of-work was refused (`ticketing_queue_challenge_failures_total{failure}`,
    /// and `ErrorInfo.metadata.failure`).
    pub enum ChallengeFailure {
        Missing = "missing",
        Malformed = "malformed",
        Expired = "expired",
        /// Not solved, or solved for another customer or event.
        Invalid = "invalid",
        /// A solution already used.
        Replayed = "replayed",
    }
}

/// The front door's keys, derived from `JWT_SECRET` with a purpose each, so
/// neither a user token nor a challenge signature passes for an admission.
pub struct FrontDoorKeys {
    challenge_secret: SecretString,
    admission_encoding: EncodingKey,
    admission_decoding: DecodingKey,
    admission_validation: Validation,
}

fn derive(secret: &SecretString, purpose: &str) -> String {
    let digest = Sha256::new().chain_update(purpose).chain_update([0]).chain_update(secret.expose_secret()).finalize();
    format!("{digest:x}")
}

impl FrontDoorKeys {
    pub fn new(jwt_secret: &SecretString) -> FrontDoorKeys {
        let admission = derive(jwt_secret, "ticketing/admission/v1");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[ADMISSION_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        // An admission's end is the organizer's, to the second.
        validation.leeway = 0;
        FrontDoorKeys {
            challenge_secret: SecretString::from(derive(jwt_secret, "ticketing/altcha/v1")),
            admission_encoding: EncodingKey::from_secret(admission.as_bytes()),
            admission_decoding: DecodingKey::from_secret(admission.as_bytes()),
            admission_validation: validation,
        }
    }

    /// A challenge's signing secrets are bound to the customer and the
    /// event: a solution bought or solved for one account fits no other.
    fn challenge_secrets(&self, event: Uuid, customer: Uuid) -> (String, String) {
        let base = self.challenge_secret.expose_secret();
        (format!("{base}:challenge:{event}:{customer}"), format!("{base}:key:{event}:{customer}"))
    }

    /// The admission of `customer` (queue entry `entry`) to `event` until
    /// `expires` (whole seconds).
    pub fn sign_admission(
        &self,
        event: Uuid,
        customer: Uuid,
        entry: Uuid,
        expires: DateTime<Utc>,
    ) -> Result<String, Error> {
        let claims = AdmissionClaims {
            sub: customer,
            evt: event,
            ent: entry,
            aud: ADMISSION_AUDIENCE.to_owned(),
            exp: expires.timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.admission_encoding).map_err(Error::internal)
    }

    /// `Ok` when `token` admits `customer` to `event` now: signed by us,
    /// unexpired, theirs and this event's.
    pub fn verify_admission(&self, token: &str, event: Uuid, customer: Uuid) -> Result<(), Error> {
        let decoded =
            jsonwebtoken::decode::<AdmissionClaims>(token, &self.admission_decoding, &self.admission_validation);
        match decoded {
            Ok(data) if data.claims.sub == customer && data.claims.evt == event => Ok(()),
            Ok(_) => Err(admission_required(event, "the admission is another customer's or another event's")),
            Err(_) if token.is_empty() => {
                Err(admission_required(event, "this event's sale is through its waiting room"))
            }
            Err(_) => Err(admission_required(event, "the admission is invalid or has expired")),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct AdmissionClaims {
    sub: Uuid,
    evt: Uuid,
    ent: Uuid,
    aud: String,
    exp: i64,
}

fn queue_path(event: Uuid) -> String {
    format!("/v1/events/{event}/queue:join")
}

fn admission_required(event: Uuid, message: &str) -> Error {
    Error::permission_denied(format!("{message}: join the queue and order once admitted"))
        .with_reason(Reason::AdmissionRequired)
        .with_metadata("queuePath", queue_path(event))
}

fn queue_unavailable(error: RedisError) -> Error {
    tracing::warn!(%error, "the waiting room's Redis is unavailable");
    Error::unavailable("the waiting room is unavailable; try again shortly", Duration::from_secs(2))
}

/// The event's room as a customer may use it: published, room enabled,
/// sales not over.
struct OpenRoom {
    event: Uuid,
    room: WaitingRoom,
    sales_start: DateTime<Utc>,
    sales_end: DateTime<Utc>,
}

async fn open_room(state: &AppState, caller: Option<&Principal>, event_id: Uuid) -> Result<OpenRoom, Error> {
    let event = catalog::get_event(state, caller, event_id).await?.into_message()?;
    let room = event.waiting_room.map(wire::waiting_room_from_proto).unwrap_or_default();
    let published = event.status == i32::from(v1::EventStatus::Published);
    let time = |t| wire::time_from_proto(t).unwrap_or_default();
    let (sales_start, sales_end) = (time(event.sales_start_time), time(event.sales_end_time));
    if !published {
        return Err(Error::failed_precondition(Reason::EventNotPublished, "the event is not on sale"));
    }
    if !room.enabled {
        return Err(Error::failed_precondition(
            Reason::WaitingRoomDisabled,
            "this event has no waiting room: order directly",
        ));
    }
    if Utc::now() >= sales_end {
        return Err(Error::failed_precondition(Reason::SalesClosed, "sales for this event have ended"));
    }
    Ok(OpenRoom { event: event_id, room, sales_start, sales_end })
}

fn customer(ctx: &RequestContext) -> Result<&Principal, Error> {
    let caller = ctx.principal()?;
    if caller.role != Role::Customer {
        return Err(Error::permission_denied("only customer accounts queue to buy"));
    }
    Ok(caller)
}

/// A challenge for `caller` to join `event_id`'s queue.
#[tracing::instrument(name = "waiting_room.get_challenge", skip_all)]
pub async fn get_challenge(
    state: &AppState,
    ctx: &RequestContext,
    event_id: Uuid,
) -> Result<v1::AltchaChallenge, Error> {
    let caller = customer(ctx)?;
    let open = open_room(state, Some(caller), event_id).await?;
    let (signature_secret, key_secret) = state.front_door.challenge_secrets(event_id, caller.user_id);
    let expires_at = Utc::now() + chrono::Duration::from_std(state.config.challenge_ttl).map_err(Error::internal)?;
    let challenge = altcha::create_challenge(CreateChallengeOptions {
        algorithm: ALGORITHM.to_owned(),
        cost: PBKDF2_ROUNDS,
        // Deterministic mode: the solution is this counter, uniform below
        // the difficulty, and verifying it is one HMAC (no derivation).
        counter: Some(rand::thread_rng().gen_range(0..=open.room.challenge_difficulty())),
        expires_at: Some(expires_at.timestamp()),
        hmac_signature_secret: Some(signature_secret),
        hmac_key_signature_secret: Some(key_secret),
        ..CreateChallengeOptions::default()
    })
    .map_err(Error::internal)?;
    let p = challenge.parameters;
    Ok(v1::AltchaChallenge {
        parameters: Some(v1::AltchaParameters {
            algorithm: p.algorithm,
            cost: p.cost,
            key_length: u32::try_from(p.key_length).map_err(Error::internal)?,
            key_prefix: p.key_prefix,
            key_signature: p.key_signature.unwrap_or_default(),
            nonce: p.nonce,
            salt: p.salt,
            expires_at: p.expires_at.and_then(|t| u32::try_from(t).ok()).unwrap_or_default(),
        }),
        signature: challenge.signature.unwrap_or_default(),
    })
}

fn challenge_failed(failure: ChallengeFailure) -> Error {
    metrics::counter!("ticketing_queue_challenge_failures_total", "failure" => failure.as_str()).increment(1);
    let message = match failure {
        ChallengeFailure::Missing => "joining needs a solved challenge (`altcha`)",
        ChallengeFailure::Malformed => "the challenge solution is malformed",
        ChallengeFailure::Expired => "the challenge has expired: fetch a new one",
        ChallengeFailure::Invalid => "the challenge solution is not valid for this customer and event",
        ChallengeFailure::Replayed => "this challenge solution was used already: fetch a new one",
    };
    Error::invalid_argument(message).with_reason(Reason::ChallengeFailed).with_metadata("failure", failure.as_str())
}

/// Checks the widget's value; the signature that identifies the solution
/// (to spend it once) and when it may be forgotten.
fn verify_solution(
    state: &AppState,
    event: Uuid,
    customer: Uuid,
    solution: &str,
) -> Result<(String, DateTime<Utc>), ChallengeFailure> {
    if solution.trim().is_empty() {
        return Err(ChallengeFailure::Missing);
    }
    if solution.len() > MAX_SOLUTION_BYTES {
        return Err(ChallengeFailure::Malformed);
    }
    let json = BASE64.decode(solution.trim()).map_err(|_| ChallengeFailure::Malformed)?;
    let payload: altcha::Payload = serde_json::from_slice(&json).map_err(|_| ChallengeFailure::Malformed)?;
    let (signature_secret, key_secret) = state.front_door.challenge_secrets(event, customer);
    let verified = altcha::verify_solution(VerifySolutionOptions {
        hmac_key_signature_secret: Some(key_secret),
        ..VerifySolutionOptions::new(&payload.challenge, &payload.solution, signature_secret)
    })
    .map_err(|_| ChallengeFailure::Invalid)?;
    if verified.expired {
        return Err(ChallengeFailure::Expired);
    }
    // Without an expiry a solution would have to be remembered forever.
    let expires = payload.challenge.parameters.expires_at.and_then(|t| DateTime::from_timestamp(t, 0));
    match (verified.verified, payload.challenge.signature, expires) {
        (true, Some(signature), Some(expires)) => Ok((signature, expires)),
        _ => Err(ChallengeFailure::Invalid),
    }
}

/// Joins `caller` to the queue of `event_id` with a solved challenge; the
/// entry, and whether it is new.
#[tracing::instrument(name = "waiting_room.join_queue", skip_all)]
pub async fn join_queue(
    state: &AppState,
    ctx: &RequestContext,
    event_id: Uuid,
    solution: &str,
) -> Result<(v1::QueueEntry, bool), Error> {
    let caller = customer(ctx)?;
    let per_ip = Limit { name: "queue_join_ip", quota: state.config.queue_joins_per_ip, window: JOIN_WINDOW };
    limits::check(state, per_ip, &ctx.client_ip.to_string()).await?;
    let per_customer =
        Limit { name: "queue_join_customer", quota: state.config.queue_joins_per_customer, window: JOIN_WINDOW };
    limits::check(state, per_customer, &caller.user_id.to_string()).await?;
    let open = open_room(state, Some(caller), event_id).await?;
    let (signature, expires) = verify_solution(state, event_id, caller.user_id, solution).map_err(challenge_failed)?;
    let joined = Queue::new(&state.redis, event_id, open.sales_end)
        .join(
            caller.user_id,
            rules::placement(Utc::now(), open.sales_start),
            Solution { signature: &signature, expires },
        )
        .await
        .map_err(queue_unavailable)?;
    let Joined::Entry { standing, created } = joined else {
        return Err(challenge_failed(ChallengeFailure::Replayed));
    };
    if created {
        state.live.queue_changed(event_id);
    }
    let outcome = if created { "joined" } else { "rejoined" };
    metrics::counter!("ticketing_queue_joins_total", "outcome" => outcome).increment(1);
    Ok((entry_view(state, &open, standing)?, created))
}

/// The caller's entry in `event_id`'s queue.
#[tracing::instrument(name = "waiting_room.get_queue_entry", skip_all)]
pub async fn get_queue_entry(
    state: &AppState,
    ctx: &RequestContext,
    event_id: Uuid,
    entry_id: &str,
) -> Result<v1::QueueEntry, Error> {
    let caller = customer(ctx)?;
    let entry_id = parse_id(entry_id, "queueEntryId")?;
    let open = open_room(state, Some(caller), event_id).await?;
    let standing =
        Queue::new(&state.redis, event_id, open.sales_end).standing(entry_id).await.map_err(queue_unavailable)?;
    match standing {
        Some(standing) if standing.entry.customer == caller.user_id => entry_view(state, &open, standing),
        _ => Err(Error::not_found("queue entry")),
    }
}

/// Where each of `entries` of `event_id`'s queue stands now (one gone from
/// the queue is left out): what the live hub pushes to their watchers.
pub(crate) async fn entries_now(
    state: &AppState,
    event_id: Uuid,
    entries: &[Uuid],
) -> Result<Vec<v1::QueueEntry>, Error> {
    let open = open_room(state, None, event_id).await?;
    let standings =
        Queue::new(&state.redis, event_id, open.sales_end).standings(entries).await.map_err(queue_unavailable)?;
    standings.into_iter().map(|standing| entry_view(state, &open, standing)).collect()
}

fn entry_view(state: &AppState, open: &OpenRoom, standing: Standing) -> Result<v1::QueueEntry, Error> {
    let Standing { entry, ahead, observed_per_minute, now } = standing;
    let expires = entry.admission.map(|a| a.expires_at);
    let status = rules::status(expires, now);
    let clamp = |value: u64| i32::try_from(value).unwrap_or(i32::MAX);
    let (position, ahead_count, wait) = match (status, ahead) {
        (QueueStatus::Waiting, Some(ahead)) => (
            clamp(ahead + 1),
            clamp(ahead),
            clamp(rules::estimated_wait_seconds(ahead + 1, observed_per_minute, open.room.admit_per_minute)),
        ),
        _ => (0, 0, 0),
    };
    let admission = match (status, expires) {
        (QueueStatus::Admitted, Some(expires)) => {
            Some(v1::Admission {
                token: state.front_door.sign_admission(open.event, entry.customer, entry.id, expires)?,
                // The token's expiry is in whole seconds; so is this.
                expire_time: wire::timestamp(DateTime::from_timestamp(expires.timestamp(), 0).unwrap_or(expires)),
            })
        }
        _ => None,
    };
    let status = match status {
        QueueStatus::Waiting => v1::QueueEntryStatus::Waiting,
        QueueStatus::Admitted => v1::QueueEntryStatus::Admitted,
        QueueStatus::Expired => v1::QueueEntryStatus::Expired,
    };
    Ok(v1::QueueEntry {
        id: entry.id.to_string(),
        event_id: open.event.to_string(),
        status: status.into(),
        position,
        ahead_count,
        estimated_wait_seconds: wait,
        admission,
        create_time: wire::timestamp(entry.joined_at),
    })
}

/// `CreateOrder`'s check for an event with its room enabled.
pub fn require_admission(
    state: &AppState,
    room: &WaitingRoom,
    token: &str,
    event: Uuid,
    customer: Uuid,
) -> Result<(), Error> {
    if !room.enabled {
        return Ok(());
    }
    state.front_door.verify_admission(token, event, customer).inspect_err(|_| {
        metrics::counter!("ticketing_queue_admission_refusals_total").increment(1);
    })
}

/// One admission step for every open room; the entries admitted. Run by
/// the worker holding the admissions lease.
pub async fn admit_due(state: &AppState) -> Result<usize, Error> {
    let rooms = state.db.read_replica(|conn| ticketing_store::events::open_waiting_rooms(conn).scope_boxed()).await?;
    let (mut admitted, mut waiting) = (0, 0);
    for (event, room, sales_end) in rooms {
        let pace = Pace {
            per_minute: room.admit_per_minute,
            max_active: room.max_active_buyers(),
            admission: room.admission_period(),
            max_batch: MAX_ADMISSIONS_PER_STEP,
        };
        let step = Queue::new(&state.redis, event, sales_end).admit(pace).await.map_err(queue_unavailable)?;
        for joined in &step.joined {
            let waited = (step.now - *joined).to_std().unwrap_or_default();
            metrics::histogram!("ticketing_queue_wait_seconds").record(waited.as_secs_f64());
        }
        if !step.joined.is_empty() {
            state.live.queue_changed(event);
        }
        admitted += step.joined.len();
        waiting += step.still_waiting;
    }
    metrics::counter!("ticketing_queue_admissions_total").increment(admitted as u64);
    metrics::gauge!("ticketing_queue_waiting").set(waiting as f64);
    Ok(admitted)
}

//! The waiting room's queue, in Redis: unlike the rest of what Redis holds
//! it must survive a restart (the stack and the manifests run Redis with an
//! append-only file), and every change is one atomic script, so any number
//! of replicas and workers share one queue with no lock of their own.
//!
//! Per event (one hash tag, one cluster slot):
//! - `wr:{E}:q`         sorted set of WAITING entry ids by place;
//! - `wr:{E}:entries`   hash entry id → `customer,joined_ms,admitted_ms,expires_ms`;
//! - `wr:{E}:customers` hash customer id → their entry id;
//! - `wr:{E}:active`    sorted set of admitted entry ids by admission expiry;
//! - `wr:{E}:pace`      hash `last`, `credit`, `rate`: the admission pace;
//! - `wr:{E}:seq`       arrivals after the start (FIFO places);
//! - `wr:{E}:spent:S`   a proof-of-work solution (signature S) used, until it expires.
//!
//! The queue's keys expire a day after the event's sales end.

use chrono::{DateTime, Utc};
use ticketing_domain::waiting_room::{PRE_QUEUE_SPAN, Placement};
use uuid::Uuid;

use crate::redis::{LuaScript, Redis, RedisError};

/// Spends the join's proof-of-work solution (`KEYS[6]`, kept `ARGV[6]` ms;
/// a solution seen before is `replayed` and nothing changes), then joins
/// `customer` to the queue or finds their entry: an entry still waiting or
/// admitted is theirs again; an expired admission makes way for a new entry
/// at the back. The place is the caller's (drawn), or with `ARGV[4]` =
/// `fifo` the next arrival number after `ARGV[3]`. One script, one round
/// trip, with the entry's standing as [`READ`] gives it.
/// Returns {entry id, record, created (0/1), server time ms, rank (-1: not
/// waiting), observed rate}, or {'replayed'}.
static JOIN: LuaScript = LuaScript::new(
    r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if not redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[6]) then
  return {'replayed'}
end
local function standing(id, record, created)
  local rank = redis.call('ZRANK', KEYS[3], id)
  local rate = redis.call('HGET', KEYS[7], 'rate') or ''
  return {id, record, created, tostring(now), rank or -1, rate}
end
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then
  local record = redis.call('HGET', KEYS[1], existing)
  if record then
    local expires = tonumber(string.match(record, ',(%d+)$'))
    if expires == 0 or expires > now then
      return standing(existing, record, 0)
    end
    redis.call('HDEL', KEYS[1], existing)
    redis.call('ZREM', KEYS[4], existing)
  end
end
local place = ARGV[3]
if ARGV[4] == 'fifo' then
  place = string.format('%.0f', tonumber(ARGV[3]) + redis.call('INCR', KEYS[5]))
end
local record = ARGV[1] .. ',' .. now .. ',0,0'
redis.call('HSET', KEYS[1], ARGV[2], record)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], place, ARGV[2])
for i = 1, 5 do redis.call('EXPIREAT', KEYS[i], ARGV[5]) end
return standing(ARGV[2], record, 1)",
);

/// An entry's record, its rank among those waiting (-1: not waiting), the
/// observed admission rate and the server's time.
static READ: LuaScript = LuaScript::new(
    r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return {'', -1, '', tostring(now)} end
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
local rate = redis.call('HGET', KEYS[3], 'rate') or ''
return {record, rank or -1, rate, tostring(now)}",
);

/// [`READ`] for many entries at once (`ARGV`): the server's time, the
/// observed rate, then each entry's record and rank.
static READ_MANY: LuaScript = LuaScript::new(
    r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local reply = {tostring(now), redis.call('HGET', KEYS[3], 'rate') or ''}
for i = 1, #ARGV do
  reply[#reply + 1] = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  reply[#reply + 1] = tostring(redis.call('ZRANK', KEYS[2], ARGV[i]) or -1)
end
return reply",
);

/// One admission step: credit accrues at `ARGV[1]` per minute since the
/// last step (at most a second's worth banked), and as many entries as the
/// credit, the free active places (`ARGV[2]` at most) and `ARGV[4]` allow
/// leave the queue in place order, admitted for `ARGV[3]` ms. Atomic, on
/// Redis's clock: steps from any number of workers admit each entry once
/// and together keep one pace. `rate` is the admissions per minute
/// observed, smoothed over about a minute.
/// Returns {server time ms, entries still waiting, joined_ms of each admitted}.
static ADMIT: LuaScript = LuaScript::new(
    r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local per_minute = tonumber(ARGV[1])
local max_active = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local active = redis.call('ZCARD', KEYS[3])
local pace = redis.call('HMGET', KEYS[4], 'last', 'credit', 'rate')
local last = tonumber(pace[1]) or now
local credit = tonumber(pace[2]) or 0
local rate = tonumber(pace[3]) or per_minute
local elapsed = math.max(0, now - last)
credit = math.min(credit + elapsed * per_minute / 60000, math.max(1, per_minute / 60))
local n = math.min(math.floor(credit), max_active - active, tonumber(ARGV[4]))
local joined = {}
if n > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], n)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local record = redis.call('HGET', KEYS[2], id)
    if record then
      local customer, at = string.match(record, '^([^,]*),(%d+),')
      redis.call('HSET', KEYS[2], id, customer .. ',' .. at .. ',' .. now .. ',' .. (now + period))
      redis.call('ZADD', KEYS[3], now + period, id)
      joined[#joined + 1] = at
    end
  end
  credit = credit - #popped / 2
end
if elapsed > 0 then
  local weight = math.min(1, elapsed / 60000)
  rate = rate + (#joined * 60000 / elapsed - rate) * weight
end
redis.call('HSET', KEYS[4], 'last', now, 'credit', tostring(credit), 'rate', tostring(rate))
for i = 1, #KEYS do redis.call('EXPIREAT', KEYS[i], ARGV[5]) end
return {tostring(now), tostring(redis.call('ZCARD', KEYS[1])), unpack(joined)}",
);

/// Renews the lease `KEYS[1]` for its holder `ARGV[1]` or takes it when
/// free; 1 when the caller holds it now.
static LEASE: LuaScript = LuaScript::new(
    r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0",
);

/// One entry as the queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: Uuid,
    pub customer: Uuid,
    pub joined_at: DateTime<Utc>,
    /// `None` while waiting.
    pub admission: Option<Admission>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub admitted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What a join did.
#[derive(Debug, Clone)]
pub enum Joined {
    /// The solution was spent already: nothing changed.
    Replayed,
    /// The customer's entry, and whether this join made it (not an
    /// existing one).
    Entry { standing: Standing, created: bool },
}

/// A proof-of-work solution, identified by its signature, to spend once;
/// remembered until it expires.
pub struct Solution<'a> {
    pub signature: &'a str,
    pub expires: DateTime<Utc>,
}

/// An entry with where it stands.
#[derive(Debug, Clone)]
pub struct Standing {
    pub entry: Entry,
    /// Entries ahead of it; `None` once it left the queue.
    pub ahead: Option<u64>,
    /// Admissions per minute observed lately (0 before any).
    pub observed_per_minute: f64,
    pub now: DateTime<Utc>,
}

/// One admission step's outcome.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub now: DateTime<Utc>,
    pub still_waiting: u64,
    /// When each admitted entry joined.
    pub joined: Vec<DateTime<Utc>>,
}

/// The pace an admission step keeps.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub per_minute: i32,
    pub max_active: i64,
    pub admission: chrono::Duration,
    /// The most one step admits.
    pub max_batch: u32,
}

/// The queue of one event.
pub struct Queue<'a> {
    redis: &'a Redis,
    event: Uuid,
    /// Unix seconds when the queue's keys may go.
    keep_until: i64,
}

fn millis(value: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(value).unwrap_or_default()
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, RedisError> {
    value.parse::<i64>().map(millis).map_err(|_| corrupt("time"))
}

fn corrupt(what: &str) -> RedisError {
    RedisError::new(fred::error::ErrorKind::Parse, format!("the waiting room's {what} is malformed"))
}

/// `customer,joined_ms,admitted_ms,expires_ms`.
fn parse_record(id: Uuid, record: &str) -> Result<Entry, RedisError> {
    let fields: Vec<&str> = record.split(',').collect();
    let [customer, joined, admitted, expires] = fields[..] else { return Err(corrupt("entry")) };
    let customer = Uuid::parse_str(customer).map_err(|_| corrupt("entry"))?;
    let admitted: i64 = admitted.parse().map_err(|_| corrupt("entry"))?;
    let admission = match admitted {
        0 => None,
        at => Some(Admission { admitted_at: millis(at), expires_at: parse_time(expires)? }),
    };
    Ok(Entry { id, customer, joined_at: parse_time(joined)?, admission })
}

impl<'a> Queue<'a> {
    pub fn new(redis: &'a Redis, event: Uuid, sales_end: DateTime<Utc>) -> Queue<'a> {
        Queue { redis, event, keep_until: (sales_end + chrono::Duration::days(1)).timestamp() }
    }

    fn key(&self, name: &str) -> String {
        format!("wr:{{{}}}:{name}", self.event)
    }

    /// Spends `solution` and joins `customer` (one atomic script).
    pub async fn join(
        &self,
        customer: Uuid,
        placement: Placement,
        solution: Solution<'_>,
    ) -> Result<Joined, RedisError> {
        let new_id = Uuid::now_v7();
        let (place, mode) = match placement {
            Placement::Drawn(place) => (place, "drawn"),
            Placement::InArrivalOrder => (PRE_QUEUE_SPAN, "fifo"),
        };
        let keep_solution = (solution.expires - Utc::now()).num_milliseconds().max(1000);
        let keys = vec![
            self.key("entries"),
            self.key("customers"),
            self.key("q"),
            self.key("active"),
            self.key("seq"),
            self.key(&format!("spent:{}", solution.signature)),
            self.key("pace"),
        ];
        let args = vec![
            customer.to_string(),
            new_id.to_string(),
            place.to_string(),
            mode.to_owned(),
            self.keep_until.to_string(),
            keep_solution.to_string(),
        ];
        let reply: Vec<fred::types::Value> = self.redis.eval(&JOIN, keys, args).await?;
        let text = |index: usize| reply.get(index).and_then(fred::types::Value::as_string).unwrap_or_default();
        if text(0) == "replayed" {
            return Ok(Joined::Replayed);
        }
        let id = Uuid::parse_str(&text(0)).map_err(|_| corrupt("entry id"))?;
        let rank = reply.get(4).and_then(fred::types::Value::as_i64).unwrap_or(-1);
        let standing = Standing {
            entry: parse_record(id, &text(1))?,
            ahead: u64::try_from(rank).ok(),
            observed_per_minute: text(5).parse().unwrap_or(0.0),
            now: parse_time(&text(3))?,
        };
        Ok(Joined::Entry { standing, created: text(2) == "1" })
    }

    /// The entry and where it stands; `None` when the queue has no such entry.
    pub async fn standing(&self, entry: Uuid) -> Result<Option<Standing>, RedisError> {
        let keys = vec![self.key("entries"), self.key("q"), self.key("pace")];
        let (record, rank, rate, now): (String, i64, String, String) =
            self.redis.eval(&READ, keys, vec![entry.to_string()]).await?;
        if record.is_empty() {
            return Ok(None);
        }
        Ok(Some(Standing {
            entry: parse_record(entry, &record)?,
            ahead: u64::try_from(rank).ok(),
            observed_per_minute: rate.parse().unwrap_or(0.0),
            now: parse_time(&now)?,
        }))
    }

    /// [`Queue::standing`] of each of `entries` in one script (gone ones
    /// are left out): one round trip for all of a replica's watchers.
    pub async fn standings(&self, entries: &[Uuid]) -> Result<Vec<Standing>, RedisError> {
        let keys = vec![self.key("entries"), self.key("q"), self.key("pace")];
        let args = entries.iter().map(Uuid::to_string).collect();
        let reply: Vec<String> = self.redis.eval(&READ_MANY, keys, args).await?;
        let [now, rate, rows @ ..] = &reply[..] else { return Err(corrupt("standings reply")) };
        let (now, observed_per_minute) = (parse_time(now)?, rate.parse().unwrap_or(0.0));
        let mut standings = Vec::with_capacity(entries.len());
        for (id, row) in entries.iter().zip(rows.chunks_exact(2)) {
            if row[0].is_empty() {
                continue;
            }
            let rank: i64 = row[1].parse().map_err(|_| corrupt("rank"))?;
            standings.push(Standing {
                entry: parse_record(*id, &row[0])?,
                ahead: u64::try_from(rank).ok(),
                observed_per_minute,
                now,
            });
        }
        Ok(standings)
    }

    /// One admission step at `pace`.
    pub async fn admit(&self, pace: Pace) -> Result<Admitted, RedisError> {
        let keys = vec![self.key("q"), self.key("entries"), self.key("active"), self.key("pace")];
        let args = vec![
            pace.per_minute.to_string(),
            pace.max_active.to_string(),
            pace.admission.num_milliseconds().to_string(),
            pace.max_batch.to_string(),
            self.keep_until.to_string(),
        ];
        let reply: Vec<String> = self.redis.eval(&ADMIT, keys, args).await?;
        let [now, waiting, joined @ ..] = &reply[..] else { return Err(corrupt("admission reply")) };
        Ok(Admitted {
            now: parse_time(now)?,
            still_waiting: waiting.parse().map_err(|_| corrupt("queue length"))?,
            joined: joined.iter().map(|at| parse_time(at)).collect::<Result<_, _>>()?,
        })
    }
}

/// Takes or renews the lease `name` for `holder` for `ttl`: `true` while
/// `holder` holds it. A holder that stops renewing loses it when it runs out.
pub async fn lease(redis: &Redis, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, RedisError> {
    let key = format!("lease:{name}");
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).to_string();
    let held: i64 = redis.eval(&LEASE, vec![key], vec![holder.to_owned(), ttl_ms]).await?;
    Ok(held == 1)
}

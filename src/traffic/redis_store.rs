//! Rate limits counted in Redis: one script decides every limit of a check in one round
//! trip, atomically — it charges the check's cost to all of them or, when any refuses, to
//! none. Time is Redis's own (`TIME`), so instances whose clocks differ still agree.

use std::{sync::Arc, time::Duration};

use super::{Decision, Limit, RateStore, StoreFuture};
use crate::shared::RedisLink;

/// `KEYS[i]`: the i-th limit's key. `ARGV[4i-3..4i]`: its interval (µs per unit), its burst
/// (units), its algorithm (`gcra` or `sliding-window`), and the check's cost (units, at
/// least 1: [`Limit::units`]). Returns, per limit: allowed (0 or 1), remaining, reset (µs
/// until full), retry after (µs; the whole window for a cost above the burst, which is
/// never allowed). GCRA moves the limit's theoretical arrival time on by `interval * cost`.
/// The sliding window keeps, in one hash, the current fixed window's index and count and
/// the previous window's count; its arithmetic is `memory::Window::take`'s.
pub const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local all = true
local writes = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[4 * i - 3])
  local burst = tonumber(ARGV[4 * i - 2])
  local algorithm = ARGV[4 * i - 1]
  local cost = tonumber(ARGV[4 * i])
  if algorithm == 'gcra' then
    local tat = tonumber(redis.call('GET', KEYS[i])) or now
    if tat < now then tat = now end
    local new_tat = tat + interval * cost
    local allow_at = new_tat - burst * interval
    if allow_at <= now then
      writes[i] = {'gcra', new_tat, new_tat - now}
      out[#out + 1] = 1
      out[#out + 1] = math.floor((now - allow_at) / interval)
      out[#out + 1] = new_tat - now
      out[#out + 1] = 0
    else
      all = false
      out[#out + 1] = 0
      out[#out + 1] = 0
      out[#out + 1] = tat - now
      if cost > burst then
        out[#out + 1] = burst * interval
      else
        out[#out + 1] = allow_at - now
      end
    end
  else
    local window = burst * interval
    local index = math.floor(now / window)
    local elapsed = now - index * window
    local stored = redis.call('HMGET', KEYS[i], 'index', 'current', 'previous')
    local stored_index = tonumber(stored[1]) or -2
    local current, previous = 0, 0
    if stored_index == index then
      current, previous = tonumber(stored[2]), tonumber(stored[3])
    elseif stored_index == index - 1 then
      previous = tonumber(stored[2])
    end
    local estimate = previous * (window - elapsed) / window + current
    if estimate + cost <= burst then
      writes[i] = {'window', index, current + cost, previous, 2 * window}
      out[#out + 1] = 1
      out[#out + 1] = math.floor(burst - estimate - cost)
      out[#out + 1] = window - elapsed
      out[#out + 1] = 0
    else
      all = false
      local room = burst - cost - current
      local wait
      if cost > burst then
        wait = window
      elseif room >= 0 and previous > 0 then
        local needed = math.ceil((1 - room / previous) * window)
        wait = needed - math.min(elapsed, needed)
      else
        local needed = 1 - (burst - cost) / math.max(current, 1)
        if needed < 0 then needed = 0 end
        wait = (window - elapsed) + math.ceil(needed * window)
      end
      out[#out + 1] = 0
      out[#out + 1] = 0
      out[#out + 1] = window - elapsed
      out[#out + 1] = math.max(wait, 1)
    end
  end
end
if all then
  for i, w in pairs(writes) do
    if w[1] == 'gcra' then
      redis.call('SET', KEYS[i], w[2], 'PX', math.ceil(w[3] / 1000) + 1)
    else
      redis.call('HSET', KEYS[i], 'index', w[2], 'current', w[3], 'previous', w[4])
      redis.call('PEXPIRE', KEYS[i], math.ceil(w[5] / 1000) + 1)
    end
  end
end
return out
"#;

pub struct RedisStore {
    link: Arc<RedisLink>,
    script: redis::Script,
}

impl RedisStore {
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self {
            link,
            script: redis::Script::new(SCRIPT),
        }
    }
}

impl RateStore for RedisStore {
    fn check<'a>(&'a self, limits: &'a [Limit]) -> StoreFuture<'a, Option<Vec<Decision>>> {
        Box::pin(async move {
            let mut invocation = self.script.prepare_invoke();
            for limit in limits {
                invocation
                    .key(limit.store_key())
                    .arg(limit.rate.interval().as_micros() as u64)
                    .arg(limit.rate.burst)
                    .arg(limit.algorithm.as_str())
                    .arg(limit.units().get());
            }
            let answer: Vec<i64> = self
                .link
                .run(async |connection| invocation.invoke_async(connection).await)
                .await?;
            if answer.len() != limits.len() * 4 {
                tracing::warn!("the rate-limit script answered in an unexpected shape");
                return None;
            }
            let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
            Some(
                limits
                    .iter()
                    .zip(answer.chunks_exact(4))
                    .map(|(limit, values)| Decision {
                        scope: limit.scope,
                        rate: limit.rate,
                        allowed: values[0] == 1,
                        remaining: u32::try_from(values[1]).unwrap_or(0),
                        reset: micros(values[2]),
                        retry_after: micros(values[3]),
                    })
                    .collect(),
            )
        })
    }
}

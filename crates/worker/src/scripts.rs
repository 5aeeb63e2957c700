//! Lua scripts: each runs atomically in Redis, so readers never see a
//! half-applied change.

use redis::aio::ConnectionManager;

use crate::WorkerError;

/// Applies one contact's decisions to several segments.
///
/// KEYS: events stream, then per segment: members, meta, versions.
/// ARGV: contact, version, cause, now, events max length, then per segment:
/// segment id, desired (`1` member / `0` not).
///
/// A decision applies only to a built segment (meta exists), and only if its
/// version is newer than both the segment's last build (`built_seq`: the
/// build already reflects that state) and the last decision applied for
/// this contact: a stale evaluation never overwrites a newer one.
///
/// Returns `{entered, exited}`: how many sets the contact entered and left.
pub const APPLY: &str = r"
local contact = ARGV[1]
local version = tonumber(ARGV[2])
local n = (#KEYS - 1) / 3
local entered, exited = 0, 0
for i = 0, n - 1 do
  local members, meta, versions = KEYS[2 + i * 3], KEYS[3 + i * 3], KEYS[4 + i * 3]
  local segment, desired = ARGV[6 + i * 2], ARGV[7 + i * 2]
  if redis.call('EXISTS', meta) == 1 then
    local built = tonumber(redis.call('HGET', meta, 'built_seq') or '0')
    local seen = tonumber(redis.call('HGET', versions, contact) or '-1')
    if version > built and version > seen then
      redis.call('HSET', versions, contact, version)
      local moved
      if desired == '1' then moved = redis.call('SADD', members, contact) else moved = redis.call('SREM', members, contact) end
      if moved == 1 then
        if desired == '1' then entered = entered + 1 else exited = exited + 1 end
        redis.call('HINCRBY', meta, 'version', 1)
        redis.call('HSET', meta, 'count', redis.call('SCARD', members))
        local change = 'exited'
        if desired == '1' then change = 'entered' end
        redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 'segment', segment, 'contact', contact, 'change', change, 'cause', ARGV[3], 'at', ARGV[4])
      end
    end
  end
end
return {entered, exited}
";

/// Swaps a finished build in.
///
/// KEYS: building set, members, meta, versions, events.
/// ARGV: built_seq, built_at, definition hash, segment id, events max length.
/// Returns the new member count, or -1 when a newer build already landed
/// (then this one is discarded).
pub const SWAP: &str = r"
local current = tonumber(redis.call('HGET', KEYS[3], 'built_seq') or '-1')
if current > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return -1
end
-- UNLINK frees the replaced set in the background: RENAME over it would
-- free a large set inside this script, blocking every other client.
redis.call('UNLINK', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
end
redis.call('DEL', KEYS[4])
local count = redis.call('SCARD', KEYS[2])
redis.call('HSET', KEYS[3], 'built_seq', ARGV[1], 'built_at', ARGV[2], 'definition', ARGV[3], 'count', count)
redis.call('HINCRBY', KEYS[3], 'version', 1)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'segment', ARGV[4], 'contact', '', 'change', 'rebuilt', 'cause', 'rebuild', 'at', ARGV[2])
return count
";

/// A script loaded once and invoked by hash, reloaded after a Redis restart.
#[derive(Debug, Clone)]
pub struct Script {
    source: &'static str,
    sha: String,
}

impl Script {
    pub fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    /// Runs several invocations in one round trip; each is (keys, args).
    pub async fn run_many<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        invocations: &[(Vec<String>, Vec<String>)],
    ) -> Result<Vec<T>, WorkerError> {
        if invocations.is_empty() {
            return Ok(Vec::new());
        }
        match self.pipeline(conn, invocations).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(self.source)
                    .query_async(conn)
                    .await?;
                Ok(self.pipeline(conn, invocations).await?)
            }
            other => Ok(other?),
        }
    }

    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        invocations: &[(Vec<String>, Vec<String>)],
    ) -> Result<Vec<T>, redis::RedisError> {
        let mut pipe = redis::pipe();
        for (keys, args) in invocations {
            pipe.cmd("EVALSHA")
                .arg(&self.sha)
                .arg(keys.len())
                .arg(keys)
                .arg(args);
        }
        pipe.query_async(conn).await
    }
}

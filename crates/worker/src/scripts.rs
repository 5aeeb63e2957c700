//! Lua scripts: each runs atomically in Redis, so readers never see a
//! half-applied change.

use crate::connection::SetsConnection;

use crate::WorkerError;

/// Applies one contact's decisions to several segments.
///
/// KEYS: events stream, then per segment: members, meta, versions.
/// ARGV: contact, version, xid, cause, now, events max length, then per
/// segment: segment id, desired (`1` member / `0` not).
///
/// The decision reflects the contact's state as of its change `version`,
/// written by transaction `xid`. It applies only to a built segment (meta
/// exists), only if the build's snapshot did not see that change (then the
/// build already reflects it, or a newer state), and only if `version` is
/// newer than the last decision applied for this contact since the build:
/// a stale evaluation never overwrites a newer one. A meta written before
/// snapshots were recorded carries `built_seq` alone: the build saw every
/// change up to it.
///
/// Returns `{entered, exited}`: how many sets the contact entered and left.
pub const APPLY: &str = r"
local contact = ARGV[1]
local version = tonumber(ARGV[2])
local xid = tonumber(ARGV[3])
local needle = ',' .. ARGV[3] .. ','
local n = (#KEYS - 1) / 3
local entered, exited = 0, 0
for i = 0, n - 1 do
  local members, meta, versions = KEYS[2 + i * 3], KEYS[3 + i * 3], KEYS[4 + i * 3]
  local segment, desired = ARGV[7 + i * 2], ARGV[8 + i * 2]
  local built = redis.call('HMGET', meta, 'built_xmin', 'built_xmax', 'built_xip', 'built_seq')
  local seen_by_build = nil
  if built[1] then
    local xmin, xmax = tonumber(built[1]), tonumber(built[2])
    seen_by_build = xid < xmin or (xid < xmax and not string.find(built[3] or '', needle, 1, true))
  elseif built[4] then
    seen_by_build = version <= tonumber(built[4])
  end
  if seen_by_build == false then
    local seen = tonumber(redis.call('HGET', versions, contact) or '-1')
    if version > seen then
      redis.call('HSET', versions, contact, version)
      local moved
      if desired == '1' then moved = redis.call('SADD', members, contact) else moved = redis.call('SREM', members, contact) end
      if moved == 1 then
        if desired == '1' then entered = entered + 1 else exited = exited + 1 end
        redis.call('HINCRBY', meta, 'version', 1)
        redis.call('HSET', meta, 'count', redis.call('SCARD', members))
        local change = 'exited'
        if desired == '1' then change = 'entered' end
        redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '*', 'segment', segment, 'contact', contact, 'change', change, 'cause', ARGV[4], 'at', ARGV[5])
      end
    end
  end
end
return {entered, exited}
";

/// Swaps a finished build in.
///
/// KEYS: building set, members, meta, versions, events.
/// ARGV: catalog version, snapshot xmin, xmax, in-progress list (`,a,b,`),
/// built_at, definition hash, segment id, events max length.
///
/// Builds are ordered by the catalog they were made from, then by their
/// snapshot's xmax (snapshots taken later have no smaller xmax). Returns the
/// new member count, or -1 when a newer build already landed (this one is
/// then discarded).
pub const SWAP: &str = r"
local current = redis.call('HMGET', KEYS[3], 'built_catalog', 'built_xmax')
local catalog, xmax = tonumber(ARGV[1]), tonumber(ARGV[3])
local cur_catalog, cur_xmax = tonumber(current[1] or '-1'), tonumber(current[2] or '-1')
if cur_catalog > catalog or (cur_catalog == catalog and cur_xmax > xmax) then
  redis.call('DEL', KEYS[1])
  return -1
end
-- UNLINK frees the replaced set in the background: RENAME over it would
-- free a large set inside this script, blocking every other client.
redis.call('UNLINK', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  -- RENAME carries the build set's expiry over: a live set never expires.
  redis.call('PERSIST', KEYS[2])
end
redis.call('DEL', KEYS[4])
local count = redis.call('SCARD', KEYS[2])
redis.call('HDEL', KEYS[3], 'built_seq')
redis.call('HSET', KEYS[3], 'built_catalog', ARGV[1], 'built_xmin', ARGV[2], 'built_xmax', ARGV[3], 'built_xip', ARGV[4], 'built_at', ARGV[5], 'definition', ARGV[6], 'count', count)
redis.call('HINCRBY', KEYS[3], 'version', 1)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*', 'segment', ARGV[7], 'contact', '', 'change', 'rebuilt', 'cause', 'rebuild', 'at', ARGV[5])
return count
";

/// Sets each listed contact's membership of one segment to what SQL
/// decided, unless something newer got there first: the drift check's
/// repairs (cause `repair`, counted in `repairs`) and the moves time alone
/// makes (cause `time`).
///
/// KEYS: members, meta, versions, events.
/// ARGV: the build identity the decisions were made against (see
/// `build_identity`), cause, now, events max length, segment id, then per contact: contact,
/// desired (`1`/`0`), version (the contact's version in the snapshot SQL
/// decided from; empty for a deleted contact, which never comes back).
///
/// A decision lands only if the set is still the build the check compared
/// (a swap since then brought a newer state, and cleared `versions`) and
/// no decision newer than `version` was applied for the contact. It then
/// records `version` as applied, so an older job does not undo it.
/// Returns how many contacts moved, or -1 when the set was rebuilt.
pub const REPAIR: &str = r"
local b = redis.call('HMGET', KEYS[2], 'built_catalog', 'built_xmin', 'built_xmax', 'built_seq', 'built_at')
local identity = (b[1] or '') .. '/' .. (b[2] or '') .. '/' .. (b[3] or '') .. '/' .. (b[4] or '') .. '/' .. (b[5] or '')
if identity ~= ARGV[1] then return -1 end
local repaired = 0
for i = 6, #ARGV, 3 do
  local contact, desired, version = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local seen = tonumber(redis.call('HGET', KEYS[3], contact) or '-1')
  if version == '' or seen <= tonumber(version) then
    local moved
    if desired == '1' then moved = redis.call('SADD', KEYS[1], contact) else moved = redis.call('SREM', KEYS[1], contact) end
    if moved == 1 then
      repaired = repaired + 1
      if version ~= '' then redis.call('HSET', KEYS[3], contact, version) end
      local change = 'exited'
      if desired == '1' then change = 'entered' end
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'segment', ARGV[5], 'contact', contact, 'change', change, 'cause', ARGV[2], 'at', ARGV[3])
    end
  end
end
if repaired > 0 then
  redis.call('HINCRBY', KEYS[2], 'version', 1)
  if ARGV[2] == 'repair' then redis.call('HINCRBY', KEYS[2], 'repairs', repaired) end
  redis.call('HSET', KEYS[2], 'count', redis.call('SCARD', KEYS[1]))
end
return repaired
";

/// Records the instant a set was last brought up to date with time, if the
/// set is still the build it was done against.
///
/// KEYS: meta. ARGV: build identity (as `REPAIR`), the instant (RFC 3339).
/// Returns 1 when recorded.
pub const MARK_TIME: &str = r"
local b = redis.call('HMGET', KEYS[1], 'built_catalog', 'built_xmin', 'built_xmax', 'built_seq', 'built_at')
local identity = (b[1] or '') .. '/' .. (b[2] or '') .. '/' .. (b[3] or '') .. '/' .. (b[4] or '') .. '/' .. (b[5] or '')
if identity ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'time_at', ARGV[2])
return 1
";

/// Raises a number, never lowering it (a string key read by `tonumber`).
///
/// KEYS: the key. ARGV: the new value. Returns the value now held.
pub const RAISE: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '')
local new = tonumber(ARGV[1])
if current and current >= new then return current end
redis.call('SET', KEYS[1], ARGV[1])
return new
";

/// Records how far the sweep has come, never moving it back: a reconciler
/// whose lease lapsed may finish after a newer one.
///
/// KEYS: the sweep marker. ARGV: the snapshot swept (`xmin:xmax:xip`), its
/// xmax. Returns 1 when recorded.
pub const MARK_SWEPT: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local xmax = tonumber(string.match(current, '^%d+:(%d+):'))
  if xmax and xmax > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
";

/// Drops a deleted segment's keys, unless a build from a catalog newer than
/// the one that found it deleted wrote them (ids are never reused, so that
/// only happens when the finder's catalog was stale).
///
/// KEYS: members, meta, versions. ARGV: the finder's catalog version.
/// Returns 1 when dropped.
pub const FORGET: &str = r"
local built = tonumber(redis.call('HGET', KEYS[2], 'built_catalog') or '-1')
if built > tonumber(ARGV[1]) then return 0 end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])
return 1
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
        conn: &mut SetsConnection,
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
        conn: &mut SetsConnection,
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

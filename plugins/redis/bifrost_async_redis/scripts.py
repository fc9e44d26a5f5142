"""The Lua scripts that make every write atomic on the Redis server.

A job is a hash at ``<prefix>job:<id>`` with the fields ``record`` (the JSON of
:meth:`bifrost_async.jobs.Job.to_record`), ``status`` and, once set, ``expires_at`` (epoch
seconds), so the scripts decide on two short fields instead of decoding the record. Two sorted
sets index the jobs: ``<prefix>jobs`` scores every live job by its expiry (``+inf`` until it
finishes) and gives the bound, ``<prefix>leases`` scores unfinished jobs by their lease and feeds
the sweep. Redis runs a script without interleaving another command, so a compare-and-set in it
cannot race: of two workers finishing the same job, exactly one write lands.

A credentialed job (owner not ``""``) is also in its owner's list index ``<prefix>owner:<digest>:
<type>`` (scored by ``created_at``, the listing order) and in its twin ``<prefix>owner-expiry:
<digest>:<type>`` (scored by expiry, ``+inf`` until the job finishes). Public jobs are in no list
index: nobody can list them. Every index key carries the expiry of its latest-expiring member and
none while one is unfinished (``fit``), so once every job has expired no key of ours is left
(the ``leases`` set only holds unfinished jobs, hence is empty and gone by then). Members that
expired are trimmed (``trim``) whenever a script touches their index.
"""

from __future__ import annotations

#: Lua shared by the writing scripts (prepended to each).
#: ``fit(key)``: a sorted set scored by expiry expires with its latest member (never while one is
#: ``+inf``, i.e. unfinished). ``trim(index, expiry, now)``: drop up to 100 members that expired
#: by ``now`` from a list index and its twin. ``owned(now)``: trim and fit the list index
#: ``KEYS[5]`` and its twin ``KEYS[6]`` when given (credentialed jobs); an index that holds entries
#: its twin lacks (written before the twin existed) keeps no expiry, so it never drops a live job.
_HELPERS = """
local function fit(key)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #top == 0 then return nil end
  local score = tonumber(top[2])
  if top[2] == 'inf' or top[2] == '+inf' or score == nil or score == math.huge then
    redis.call('PERSIST', key)
    return nil
  end
  local at = string.format('%.0f', math.ceil(score * 1000))
  redis.call('PEXPIREAT', key, at)
  return at
end
local function trim(index, expiry, now)
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 100)
  if #gone > 0 then
    redis.call('ZREM', index, unpack(gone))
    redis.call('ZREM', expiry, unpack(gone))
  end
end
-- share_count(share, jobs, bound): members of an owner's share set still live in the jobs index
-- (its expired members were just trimmed by the caller); below ``bound`` the raw count answers
-- (cheap), at or above it gone members are dropped first, so the count is exact where it decides.
local function share_count(share, jobs, bound)
  local n = redis.call('ZCARD', share)
  if bound > 0 and n < bound then return n end
  local ids = redis.call('ZRANGE', share, 0, -1)
  for i = 1, #ids, 500 do
    local chunk = {unpack(ids, i, math.min(i + 499, #ids))}
    local scores = redis.call('ZMSCORE', jobs, unpack(chunk))
    for j = 1, #chunk do
      if not scores[j] then redis.call('ZREM', share, chunk[j]) n = n - 1 end
    end
  end
  return n
end
local function owned(now)  -- now: the caller's ARGV string (a Lua number loses digits)
  if #KEYS < 6 then return end
  trim(KEYS[5], KEYS[6], now)
  local at = fit(KEYS[6])
  if at and redis.call('ZCARD', KEYS[5]) <= redis.call('ZCARD', KEYS[6]) then
    redis.call('PEXPIREAT', KEYS[5], at)
  else
    redis.call('PERSIST', KEYS[5])
  end
end
"""

#: KEYS: job, jobs index, leases index, idempotency claim[, owner's list index, its expiry twin].
#: ARGV: id, record, status, now, max_jobs (0: no bound), lease score or "", expires_at or "",
#: expiry in epoch milliseconds or "", created_at, the owner's share set, the share (0: none),
#: the epoch milliseconds until which the share set must live for this job.
#: The claim (if it is this job's) stops lapsing: it now lives exactly as long as the job.
#: The share set (every job of one owner, anonymous callers included, scored by ``created_at``)
#: is judged against the jobs index, so the update and delete scripts need not know it. It
#: expires (so nothing of an owner who went away is left) no sooner than its latest job's
#: created_at + ttl + a day; a job still unfinished a day after that would go uncounted. It
#: is kept only while a share is set (jobs created without one are not counted).
#: Returns 1 when stored (or when this very record is stored already, so a create retried after
#: a lost reply succeeds), 0 when another job holds the id, -1 when the bound is reached, -2 when
#: the owner holds its share.
CREATE = (
    _HELPERS
    + """
local job, jobs, leases = KEYS[1], KEYS[2], KEYS[3]
local id, record, status, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local existing = redis.call('HGET', job, 'record')
if existing then
  if existing == record then return 1 end
  return 0
end
redis.call('ZREMRANGEBYSCORE', jobs, '-inf', now)
local max_jobs = tonumber(ARGV[5])
if max_jobs > 0 and redis.call('ZCARD', jobs) >= max_jobs then return -1 end
local share, share_max = ARGV[10], tonumber(ARGV[11])
if share_max > 0 and share_count(share, jobs, share_max) >= share_max then return -2 end
if share_max > 0 then  -- no share, no set: then nothing of ours outlives the last job
  redis.call('ZADD', share, ARGV[9], id)
  local keep = tonumber(ARGV[12]) - tonumber(now) * 1000  -- ms the set must outlive this job
  local left = redis.call('PTTL', share)
  if left < keep then redis.call('PEXPIRE', share, math.ceil(keep)) end
end
redis.call('HSET', job, 'record', record, 'status', status)
if ARGV[7] ~= '' then
  redis.call('HSET', job, 'expires_at', ARGV[7])
  redis.call('PEXPIREAT', job, ARGV[8])
  redis.call('ZADD', jobs, ARGV[7], id)
else
  redis.call('ZADD', jobs, '+inf', id)
end
fit(jobs)
if ARGV[6] ~= '' then redis.call('ZADD', leases, ARGV[6], id) end
if #KEYS >= 6 then
  redis.call('ZADD', KEYS[5], ARGV[9], id)
  redis.call('ZADD', KEYS[6], ARGV[7] ~= '' and ARGV[7] or '+inf', id)
  owned(now)
end
local claim = redis.call('GET', KEYS[4])
if claim and string.sub(claim, 1, #id + 1) == id .. '|' then
  if ARGV[7] ~= '' then redis.call('PEXPIREAT', KEYS[4], ARGV[8]) else redis.call('PERSIST', KEYS[4]) end
end
return 1
"""
)

#: KEYS: job, jobs index, leases index, idempotency claim[, owner's list index, its expiry twin].
#: ARGV: id, record, status, now, lease score or "", expires_at or "", expiry in epoch
#: milliseconds or "", the notification channel, then the statuses the stored job may be in
#: (already narrowed by the caller to those from which the move is forward, so the transition
#: rules live in one place: ``bifrost_async.jobs.may_move``).
#: Returns 1 when written or when this very record is stored already (a retry after a lost reply
#: must not report its own write as a failure), 0 when the job is missing, expired or in another
#: status. A write of a terminal status publishes the id on the channel (waiters and runners
#: everywhere wake) and gives the job's claim the job's expiry; a write that sets the expiry also
#: trims the indexes of expired jobs and refits their key expiry.
UPDATE = (
    _HELPERS
    + """
local job, jobs, leases = KEYS[1], KEYS[2], KEYS[3]
local id, record, status, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local current = redis.call('HMGET', job, 'status', 'expires_at')
if not current[1] then return 0 end
if current[2] and tonumber(current[2]) <= now then return 0 end
-- the very record again: a retry after a lost reply, whose first attempt landed (success);
-- the status is compared first, so a refused write never loads a large finished record
if current[1] == status and redis.call('HGET', job, 'record') == record then return 1 end
local allowed = false
for i = 9, #ARGV do
  if ARGV[i] == current[1] then allowed = true break end
end
if not allowed then return 0 end
redis.call('HSET', job, 'record', record, 'status', status)
if ARGV[6] ~= '' then
  redis.call('HSET', job, 'expires_at', ARGV[6])
  redis.call('PEXPIREAT', job, ARGV[7])
  redis.call('ZADD', jobs, ARGV[6], id)
  redis.call('ZREMRANGEBYSCORE', jobs, '-inf', ARGV[4])
  fit(jobs)
  if #KEYS >= 6 then
    redis.call('ZADD', KEYS[6], 'XX', ARGV[6], id)
    owned(ARGV[4])
  end
  local claim = redis.call('GET', KEYS[4])
  if claim and string.sub(claim, 1, #id + 1) == id .. '|' then redis.call('PEXPIREAT', KEYS[4], ARGV[7]) end
end
if ARGV[5] ~= '' then
  redis.call('ZADD', leases, ARGV[5], id)
else
  redis.call('ZREM', leases, id)
end
if status == 'completed' or status == 'failed' then redis.call('PUBLISH', ARGV[8], id) end
return 1
"""
)

#: KEYS: job, jobs index, leases index, idempotency claim[, owner's list index, its expiry twin].
#: ARGV: id, now, the notification channel.
#: Removes the job from everywhere, with its claim, and publishes its id (its waiters wake and
#: find it gone). Returns 1 when a live job was removed, 0 when it was missing or expired.
DELETE = (
    _HELPERS
    + """
local job, id, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local current = redis.call('HMGET', job, 'status', 'expires_at')
if not current[1] then return 0 end
redis.call('DEL', job)
redis.call('ZREM', KEYS[2], id)
fit(KEYS[2])
redis.call('ZREM', KEYS[3], id)
if #KEYS >= 6 then
  redis.call('ZREM', KEYS[5], id)
  redis.call('ZREM', KEYS[6], id)
  owned(ARGV[2])
end
local claim = redis.call('GET', KEYS[4])
if claim and string.sub(claim, 1, #id + 1) == id .. '|' then redis.call('DEL', KEYS[4]) end
redis.call('PUBLISH', ARGV[3], id)
if current[2] and tonumber(current[2]) <= now then return 0 end
return 1
"""
)

#: Shared by the claim scripts: ``live_claim(now, job_prefix)`` is the value held at KEYS[1]
#: when it is live: while its job lives (judged by the job's ``expires_at`` against ``now``, the
#: injected clock, like every read) or, if its job does not exist, until its ``lapses at``.
_LIVE_CLAIM = """
local function live_claim(now, job_prefix)
  local held = redis.call('GET', KEYS[1])
  if not held then return false end
  local id, lapses = string.match(held, '^([^|]*)|[^|]*|(.*)$')
  local current = redis.call('HMGET', job_prefix .. id, 'status', 'expires_at')
  if current[1] then
    if current[2] and tonumber(current[2]) <= now then return false end
    return held
  end
  if tonumber(lapses) ~= nil and tonumber(lapses) > now then return held end
  return false
end
"""

#: KEYS: idempotency claim.
#: ARGV: "<job id>|<fingerprint>|<lapses at>" to store, lapse in milliseconds (the key's own
#: Redis expiry, a memory bound), now, the job key prefix.
#: Returns the held value when live (nothing changes), else stores ours and returns false.
CLAIM = (
    _LIVE_CLAIM
    + """
local held = live_claim(tonumber(ARGV[3]), ARGV[4])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
)

#: KEYS: job, jobs index, leases index. ARGV: id.
#: The sweep's repair of a job whose hash vanished outside our scripts (evicted under memory
#: pressure, ``DEL`` by an operator): its ``+inf`` entry in the jobs index would hold a place in
#: the bound for good. Drops the id's lease entry (stale either way: the caller found no live
#: job), and only if the hash is really gone (checked here, atomically, so a job that still
#: exists is never dropped) its place in the jobs index, refitting that key's expiry.
#: Returns 1 when the place was freed, 0 when the job's hash exists.
FORGET_VANISHED = (
    _HELPERS
    + """
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
fit(KEYS[2])
return 1
"""
)

#: KEYS: idempotency claim. ARGV: now, the job key prefix.
#: Returns the held value when live, else false; changes nothing.
FIND_CLAIM = _LIVE_CLAIM + "return live_claim(tonumber(ARGV[1]), ARGV[2])\n"

#: KEYS: idempotency claim. ARGV: job id, the job key prefix.
#: Drops the claim if that job holds it and was never created (its submit was refused).
RELEASE_CLAIM = """
local held = redis.call('GET', KEYS[1])
if not held or string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then return 0 end
if redis.call('EXISTS', ARGV[2] .. ARGV[1]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

#: KEYS: the jobs index. ARGV: the owner's share set, now, the share (0: none).
#: Returns the owner's live jobs (``share_count``), trimming the index of expired jobs first.
OWNER_JOBS = (
    _HELPERS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
return share_count(ARGV[1], KEYS[1], tonumber(ARGV[3]))
"""
)

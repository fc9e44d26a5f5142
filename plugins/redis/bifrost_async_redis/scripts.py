"""The Lua scripts that make every write atomic on the Redis server.

A job is a hash at ``<prefix>job:<id>`` with the fields ``record`` (the JSON of
:meth:`bifrost_async.jobs.Job.to_record`), ``status`` and, once set, ``expires_at`` (epoch
seconds), so the scripts decide on two short fields instead of decoding the record. Two sorted
sets index the jobs: ``<prefix>jobs`` scores every live job by its expiry (``+inf`` until it
finishes) and gives the bound, ``<prefix>leases`` scores unfinished jobs by their lease and feeds
the sweep. Redis runs a script without interleaving another command, so a compare-and-set in it
cannot race: of two workers finishing the same job, exactly one write lands.
"""

from __future__ import annotations

#: KEYS: job, jobs index, leases index.
#: ARGV: id, record, status, now, max_jobs (0: no bound), lease score or "", expires_at or "",
#: expiry in epoch milliseconds or "".
#: Returns 1 when stored (or when this very record is stored already, so a create retried after
#: a lost reply succeeds), 0 when another job holds the id, -1 when the bound is reached.
CREATE = """
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
redis.call('HSET', job, 'record', record, 'status', status)
if ARGV[7] ~= '' then
  redis.call('HSET', job, 'expires_at', ARGV[7])
  redis.call('PEXPIREAT', job, ARGV[8])
  redis.call('ZADD', jobs, ARGV[7], id)
else
  redis.call('ZADD', jobs, '+inf', id)
end
if ARGV[6] ~= '' then redis.call('ZADD', leases, ARGV[6], id) end
return 1
"""

#: KEYS: job, jobs index, leases index.
#: ARGV: id, record, status, now, lease score or "", expires_at or "", expiry in epoch
#: milliseconds or "", then the statuses the stored job may be in (already narrowed by the
#: caller to those from which the move is forward, so the transition rules live in one place:
#: ``bifrost_async.jobs.may_move``).
#: Returns 1 when written, 0 when the job is missing, expired or in another status.
UPDATE = """
local job, jobs, leases = KEYS[1], KEYS[2], KEYS[3]
local id, record, status, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local current = redis.call('HMGET', job, 'status', 'expires_at')
if not current[1] then return 0 end
if current[2] and tonumber(current[2]) <= now then return 0 end
local allowed = false
for i = 8, #ARGV do
  if ARGV[i] == current[1] then allowed = true break end
end
if not allowed then return 0 end
redis.call('HSET', job, 'record', record, 'status', status)
if ARGV[6] ~= '' then
  redis.call('HSET', job, 'expires_at', ARGV[6])
  redis.call('PEXPIREAT', job, ARGV[7])
  redis.call('ZADD', jobs, ARGV[6], id)
end
if ARGV[5] ~= '' then
  redis.call('ZADD', leases, ARGV[5], id)
else
  redis.call('ZREM', leases, id)
end
return 1
"""

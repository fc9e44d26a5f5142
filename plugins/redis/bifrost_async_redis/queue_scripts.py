"""The Redis work queue's Lua scripts: each move of a stream entry, with its bookkeeping, atomic.

Keys (after the prefix): ``queue`` (the stream), ``queue:jobs`` (hash: job id -> ``"<entry id>
<seq> <owner digest>"``, the job's one current entry), ``queue:added`` (entries ever added: each
entry's ``seq``), ``queue:owners`` (hash: owner digest -> entries waiting or running). With
``queue:taken`` (entries ever read, counted by the readers) they give a waiting job's place:
``seq - taken``. The stream entry itself carries only the job id and the attempt.
"""

from __future__ import annotations

#: KEYS: stream, jobs, added, owners. ARGV: job id, attempt, owner digest. Returns the entry id.
PUBLISH = """
local id = redis.call('XADD', KEYS[1], '*', 'job', ARGV[1], 'attempt', ARGV[2])
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[1], id .. ' ' .. seq .. ' ' .. ARGV[3])
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
return id
"""

#: Replace a job's entry by a fresh one at the stream's end (re-delivery, hand-back).
#: KEYS: stream, jobs, added. ARGV: old entry id, job id, attempt, group. Returns the new id.
REQUEUE = """
local current = redis.call('HGET', KEYS[2], ARGV[2])
local owner = ''
if current then owner = string.match(current, '^%S+ %S+ (.*)$') or '' end
local id = redis.call('XADD', KEYS[1], '*', 'job', ARGV[2], 'attempt', ARGV[3])
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[2], id .. ' ' .. seq .. ' ' .. owner)
redis.call('XACK', KEYS[1], ARGV[4], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""

#: The run ended (or the job is gone): drop the entry, its bookkeeping and the stored request.
#: KEYS: stream, jobs, owners, request head, request body. ARGV: entry id, job id, group.
ACK = """
redis.call('XACK', KEYS[1], ARGV[3], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
local current = redis.call('HGET', KEYS[2], ARGV[2])
if not current then return 0 end
local entry, owner = string.match(current, '^(%S+) %S+ (.*)$')
if entry ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('HINCRBY', KEYS[3], owner, -1) <= 0 then redis.call('HDEL', KEYS[3], owner) end
redis.call('UNLINK', KEYS[4], KEYS[5])
return 1
"""

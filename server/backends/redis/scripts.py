"""The Lua scripts that address envelopes from presence, each one round trip to Redis.

Liveness is judged on Redis's own clock (``TIME``), so replicas and emitters
need not agree on the time. Inbox keys are built here from a prefix, and the
registry is named in ARGV, not KEYS: Redis checks each command the script runs
against the caller's ACL (an emitter may append to inboxes and read the registry,
nothing more), where declared keys would need full access. One Redis holds them
all; Redis Cluster uses sharded pub/sub instead.
"""

from __future__ import annotations

__all__ = ["CLUSTER_SEND_TO_USER", "RECORD", "REGISTER", "SEND_TO_ALL", "SEND_TO_USER"]

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: presence hash of the user. ARGV: inbox prefix, sender process, inbox MAXLEN,
# registry, envelope (absent: look only). Returns the entries (sid, value, ...) of sockets
# on live replicas, and appends the envelope to the inbox of each of those replicas but
# the sender. Entries of dead replicas are removed on the way. A value is the replica
# process, optionally followed by "#<ms>#<hex HMAC>" (see entries.py).
SEND_TO_USER = _NOW_MS + """
local entries = redis.call('HGETALL', KEYS[1])
local live, targets = {}, {}
for i = 1, #entries, 2 do
  local value = entries[i + 1]
  local process = string.match(value, '^(.*)#%d+#%x+$') or value
  local expires = redis.call('ZSCORE', ARGV[4], process)
  if expires and tonumber(expires) > now then
    live[#live + 1] = entries[i]
    live[#live + 1] = value
    targets[process] = true
  else
    redis.call('HDEL', KEYS[1], entries[i])
  end
end
if ARGV[5] then
  for process in pairs(targets) do
    if process ~= ARGV[2] then
      redis.call('XADD', ARGV[1] .. process, 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[5])
    end
  end
end
return live
"""

# ARGV: inbox prefix, sender process, inbox MAXLEN, registry, envelope. Appends the
# envelope to the inbox of every live replica but the sender; returns how many. It only
# reads the registry (an emitter may not write it); REGISTER clears it.
SEND_TO_ALL = _NOW_MS + """
local sent = 0
for _, process in ipairs(redis.call('ZRANGEBYSCORE', ARGV[4], '(' .. now, '+inf')) do
  if process ~= ARGV[2] then
    redis.call('XADD', ARGV[1] .. process, 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[5])
    sent = sent + 1
  end
end
return sent
"""

# KEYS: registry. ARGV: process, how long (ms) this heartbeat vouches for it.
# Returns 1 when the process was not registered (first beat, or Redis lost it).
# Replicas whose heartbeats stopped are dropped on the way.
REGISTER = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 6)
return added
"""

# KEYS: presence hashes. ARGV: their TTL (s), then for each key a sid and its entry.
# Records the sockets a heartbeat writes again, a chunk of them in one command.
RECORD = """
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, ARGV[2 * i], ARGV[2 * i + 1])
  redis.call('EXPIRE', key, ARGV[1])
end
return #KEYS
"""

# Redis Cluster. KEYS: presence hash of the user. ARGV: the user's shard channel, envelope
# (absent: look only). Returns {replicas listening on the channel, entries (sid, value, ...)}
# and, when the user has entries, publishes the envelope there: one slot, so one round trip
# to the shard that holds it. No entries: refused, so not published (0 listening).
CLUSTER_SEND_TO_USER = """
local entries = redis.call('HGETALL', KEYS[1])
local listening = 0
if #entries == 0 then
  -- nobody announced: refused, so not published either
elseif ARGV[2] then
  listening = redis.call('SPUBLISH', ARGV[1], ARGV[2])
else
  listening = redis.call('PUBSUB', 'SHARDNUMSUB', ARGV[1])[2]
end
return {listening, entries}
"""

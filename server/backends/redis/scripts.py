"""The Lua scripts that address envelopes from presence, each one round trip to Redis.

Liveness is judged on Redis's own clock (``TIME``), so replicas and emitters
need not agree on the time. Inbox keys are built here from a prefix, and the
registry is named in ARGV, not KEYS: Redis checks each command the script runs
against the caller's ACL (an emitter may append to inboxes and read the registry,
nothing more), where declared keys would need full access. One Redis holds them
all; Redis Cluster uses sharded pub/sub instead.
"""

from __future__ import annotations

__all__ = ["CLAIM_SESSION", "CLUSTER_SEND_TO_USER", "LEAVE", "OPEN_SESSION", "RECORD", "REGISTER", "SEND_TO_ALL",
           "SEND_TO_USER"]

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# A session entry (sessions hash, field = pid): "<deadline ms>|<epoch>|<sid>|<base>|<max messages>|<process>".
# The deadline is on Redis's clock; the epoch changes whenever a connection takes the session over,
# so a connection that lost it cannot touch it; base is the history entry its replay may start after.
_SESSIONS = """
local function session(value)
  return string.match(value, '^(%d+)|([^|]*)|([^|]*)|([^|]*)|(%d+)|(.*)$')
end

local function session_entry(deadline, epoch, sid, base, most, process)
  return deadline .. '|' .. epoch .. '|' .. sid .. '|' .. base .. '|' .. most .. '|' .. process
end

local function keep_at_least(key, ms)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or (ttl >= 0 and ttl < ms) then redis.call('PEXPIRE', key, ms) end
end

-- How long (ms) the user's history must be kept, and how many messages, for the sessions still
-- within their deadline; expired sessions are removed on the way. 0, 0: nobody can recover.
local function recovery_needs(sessions_key)
  local sessions = redis.call('HGETALL', sessions_key)
  local keep, most = 0, 0
  for i = 1, #sessions, 2 do
    local deadline, _, _, _, limit = session(sessions[i + 1])
    if deadline and tonumber(deadline) > now then
      keep = math.max(keep, tonumber(deadline) - now)
      most = math.max(most, tonumber(limit))
    else
      redis.call('HDEL', sessions_key, sessions[i])
    end
  end
  return keep, most
end

-- Appends a message to the history when a session of the user may still recover it; its offset, or ''.
local function store(sessions_key, history_key, envelope)
  local keep, most = recovery_needs(sessions_key)
  if keep == 0 then return '' end
  local offset = redis.call('XADD', history_key, 'MAXLEN', most, '*', 'm', envelope)
  keep_at_least(history_key, keep)
  return offset
end
"""

# KEYS: presence hash, sessions hash and history stream of the user. ARGV: inbox prefix, sender
# process, inbox MAXLEN, registry, envelope (absent: look only), "1" when volatile. Returns
# {entries (sid, value, ...) of sockets on live replicas, offset or ''}. Unless volatile, the
# envelope is first stored in the history while a session of the user can recover it (the entry
# id is its offset); then it is appended to the inbox of each live replica holding the user but
# the sender, and when stored, with its offset, to the sender's too: a replica then writes a
# user's stored messages in the order of their offsets, which clients resume from. Entries of
# dead replicas are removed on the way. A presence value is the replica process, optionally
# followed by "#<ms>#<hex HMAC>" (see entries.py).
SEND_TO_USER = _NOW_MS + _SESSIONS + """
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
local offset = ''
if ARGV[5] then
  if ARGV[6] ~= '1' then offset = store(KEYS[2], KEYS[3], ARGV[5]) end
  for process in pairs(targets) do
    if offset ~= '' then
      redis.call('XADD', ARGV[1] .. process, 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[5], 'o', offset)
    elseif process ~= ARGV[2] then
      redis.call('XADD', ARGV[1] .. process, 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[5])
    end
  end
end
return {live, offset}
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

# KEYS: for each socket, its user's presence hash, sessions hash and history. ARGV: the presence
# TTL (s), this process, how long (ms) a session outlives this heartbeat, then for each socket its
# sid, presence value, pid ('' without a session) and epoch. Writes a chunk of sockets' presence
# and pushes each session's deadline (and its history's TTL) forward. A socket whose session another
# connection took over is not written again; one with a session this connection holds is, whoever
# held its sid before (it was recovered here); any other only when no other process holds its sid.
RECORD = _NOW_MS + _SESSIONS + """
local deadline = now + tonumber(ARGV[3])
for i = 0, #KEYS / 3 - 1 do
  local presence, sessions, history = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local sid, value, pid, epoch = ARGV[4 * i + 4], ARGV[4 * i + 5], ARGV[4 * i + 6], ARGV[4 * i + 7]
  local current = redis.call('HGET', presence, sid)
  local ours = not current or (string.match(current, '^(.*)#%d+#%x+$') or current) == ARGV[2]
  local entry = pid ~= '' and redis.call('HGET', sessions, pid)
  if entry then
    local _, held, socket, base, most, owner = session(entry)
    ours = held == epoch
    if ours then
      redis.call('HSET', sessions, pid, session_entry(deadline, held, socket, base, most, owner))
      keep_at_least(sessions, tonumber(ARGV[3]))
      keep_at_least(history, tonumber(ARGV[3]))
    end
  end
  if ours then
    redis.call('HSET', presence, sid, value)
  end
  redis.call('EXPIRE', presence, ARGV[1])
end
return #KEYS / 3
"""

# KEYS: presence hash and sessions hash of the user. ARGV: sid, this process, pid ('' without a
# session), epoch, "end" or "keep", the recovery window (ms). A socket left: unless another
# connection took its session over (or, without one, another process holds its sid now), its
# presence entry goes and its session ends, or is kept for the window from now.
LEAVE = _NOW_MS + _SESSIONS + """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local ours = (string.match(current or '', '^(.*)#%d+#%x+$') or current) == ARGV[2]
local entry = ARGV[3] ~= '' and redis.call('HGET', KEYS[2], ARGV[3])
if entry then
  local _, held, socket, base, most, owner = session(entry)
  ours = held == ARGV[4]
  if ours and ARGV[5] == 'end' then
    redis.call('HDEL', KEYS[2], ARGV[3])
  elseif ours then
    redis.call('HSET', KEYS[2], ARGV[3], session_entry(now + tonumber(ARGV[6]), held, socket, base, most, owner))
  end
end
if ours and current then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""

# KEYS: sessions hash and history of the user. ARGV: pid, epoch, sid, process, max messages, how
# long (ms) the session outlives this moment without a heartbeat. Opens a session whose replay
# starts after the history's last entry (a start marker is added to an empty history, so the
# start is always an entry that trimming or a lost history removes); returns that start.
OPEN_SESSION = _NOW_MS + _SESSIONS + """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local base
if #last > 0 then
  base = last[1][1]
else
  base = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '*', 's', '')
end
local ttl = tonumber(ARGV[6])
redis.call('HSET', KEYS[1], ARGV[1], session_entry(now + ttl, ARGV[2], ARGV[3], base, ARGV[5], ARGV[4]))
keep_at_least(KEYS[1], ttl)
keep_at_least(KEYS[2], ttl)
return base
"""

# KEYS: sessions hash and history of the user. ARGV: pid, the client's offset ('' for none), the
# new epoch, this process, how long (ms) the session outlives this moment without a heartbeat.
# Takes a session over for a reconnecting client, wherever it was: returns {'ok', sid, the offset
# its replay starts after, the process that held it}, or {reason} when it cannot be recovered:
# 'unknown' (no such session), 'expired' (past its window) or 'gone' (the history no longer holds
# the start: trimmed, or lost with Redis). The replay starts after the later of the client's
# offset and the session's base: an offset from an earlier session of the client starts nothing.
CLAIM_SESSION = _NOW_MS + _SESSIONS + """
local function before(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  if #a_ms ~= #b_ms then return #a_ms < #b_ms end
  if a_ms ~= b_ms then return a_ms < b_ms end
  if #a_seq ~= #b_seq then return #a_seq < #b_seq end
  return a_seq < b_seq
end
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return {'unknown'} end
local deadline, _, sid, base, most, owner = session(entry)
if not deadline or tonumber(deadline) <= now then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {'expired'}
end
local start = base
if ARGV[2] ~= '' and before(base, ARGV[2]) then start = ARGV[2] end
if #redis.call('XRANGE', KEYS[2], start, start) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {'gone'}
end
local ttl = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], ARGV[1], session_entry(now + ttl, ARGV[3], sid, base, most, ARGV[4]))
keep_at_least(KEYS[1], ttl)
keep_at_least(KEYS[2], ttl)
return {'ok', sid, start, owner}
"""

# Redis Cluster. KEYS: presence hash, sessions hash and history of the user. ARGV: the user's shard
# channel, envelope (absent: look only), "1" when volatile. Returns {replicas listening on the
# channel, entries (sid, value, ...), offset or ''}. Unless volatile, the envelope is stored in the
# history as SEND_TO_USER does; when the user has entries it is published, as "@<offset> <envelope>"
# when stored. One slot, so one round trip to the shard that holds it. No entries: not published.
CLUSTER_SEND_TO_USER = _NOW_MS + _SESSIONS + """
local entries = redis.call('HGETALL', KEYS[1])
local listening, offset = 0, ''
if ARGV[2] then
  if ARGV[3] ~= '1' then offset = store(KEYS[2], KEYS[3], ARGV[2]) end
  if #entries > 0 then
    local payload = ARGV[2]
    if offset ~= '' then payload = '@' .. offset .. ' ' .. payload end
    listening = redis.call('SPUBLISH', ARGV[1], payload)
  end
else
  listening = redis.call('PUBSUB', 'SHARDNUMSUB', ARGV[1])[2]
end
return {listening, entries, offset}
"""

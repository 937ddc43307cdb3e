#!lua name=kindmap_@V
-- The routing library: every Redis write of the replicas and emitters, loaded by the replicas
-- (FUNCTION LOAD) and called by name (FCALL). "@V" is the library's version (functions.py): replicas
-- of two versions each call their own functions during a rolling upgrade.
--
-- A function runs each command with the rights of the user who calls it, so the emitter's ACL user,
-- which may append to inboxes (RPUSH) and to existing histories (RPUSHX) and read the rest, can do
-- through these functions exactly what it could do without them: append, never delete, trim, expire
-- or overwrite. Everything that removes or rewrites (pruning, trimming, expiry) runs on a replica.
--
-- Keys of one user share a hash tag ({<user>}): presence and sessions hashes, history list.
--   presence  sid -> "<process>[#<ms>#<hmac>]"                       (entries.py)
--   sessions  pid -> "<deadline>|<epoch>|<sid>|<start>|<tat>|<process>|<mac>"  (entries.py)
--   history   ["h|<generation>|<base>|<limit>", message or "!", ...]: the element at index i >= 1 has
--             sequence number base + i; its offset, which the client receives, is "<generation>-<seq>".
--             "!" marks where messages went unstored because the history was full.
-- A key of the wrong type (written by someone else) is never fatal: senders treat it as absent,
-- replicas delete it, and both report it (the anomalies returned, counted by the caller).

-- Entries a user's hash may hold before it is taken for someone else's doing and not read.
local HARD_LIMIT = 1000
-- The most messages a history keeps, whatever its header says (the bound of RECOVERY_MAX_MESSAGES).
local MOST_MESSAGES = 10000

local function now_ms()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

-- A command on a key that may hold another type: its reply, or nil and true for WRONGTYPE.
local function tolerant(command, key, ...)
  local reply = redis.pcall(command, key, ...)
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'WRONGTYPE', 1, true) then return nil, true end
    error(reply)
  end
  return reply, false
end

-- Deletes a key of the wrong type (a replica's repair); whether it did.
local function repaired(key, command, anomalies, name)
  local _, wrong = tolerant(command, key)
  if wrong then
    redis.call('DEL', key)
    anomalies[#anomalies + 1] = name
  end
  return wrong
end

-- Deletes a user's hash that is not one of ours: of another type, or far over any cap of ours (read
-- whole, it would cost every call). A replica's repair, counted; heartbeats write their entries again.
local function repaired_hash(key, anomalies, name)
  local size, wrong = tolerant('HLEN', key)
  if wrong or size > HARD_LIMIT then
    redis.call('DEL', key)
    anomalies[#anomalies + 1] = name .. (wrong and '_type' or '_size')
  end
end

local function process_of(value)
  return string.match(value, '^(.*)#%d+#%x+$') or value
end

local function deadline_of(entry)
  return tonumber(string.match(entry, '^(%d+)|'))
end

local function epoch_of(entry)
  return string.match(entry, '^%d+|([^|]*)|')
end

local function sid_of(entry)
  return string.match(entry, '^%d+|[^|]*|([^|]*)|')
end

local function keep_at_least(key, ms)
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or (ttl >= 0 and ttl < ms) then redis.call('PEXPIRE', key, ms) end
end

-- Whether a replica process is live in the registry (scores: when its heartbeat stops vouching).
local function alive(registry, process, now, cache)
  local known = cache[process]
  if known == nil then
    local expires = tolerant('ZSCORE', registry, process)
    known = expires ~= nil and expires ~= false and tonumber(expires) > now
    cache[process] = known
  end
  return known
end

-- The entries (sid, value, ...) of a user's sockets on live replicas, and those replicas.
local function live_presence(key, registry, now, anomalies)
  local size, wrong = tolerant('HLEN', key)
  if wrong then anomalies[#anomalies + 1] = 'presence_type'; return {}, {} end
  if size > HARD_LIMIT then anomalies[#anomalies + 1] = 'presence_size'; return {}, {} end
  local entries = redis.call('HGETALL', key)
  local live, processes, cache = {}, {}, {}
  for i = 1, #entries, 2 do
    local process = process_of(entries[i + 1])
    if alive(registry, process, now, cache) then
      live[#live + 1] = entries[i]
      live[#live + 1] = entries[i + 1]
      processes[process] = true
    end
  end
  return live, processes
end

-- The user's sessions still within their deadline (pid, entry, ...; nil for none): a stored message
-- may be recovered by one of them. The caller checks their signatures.
local function live_sessions(key, now, anomalies)
  local size, wrong = tolerant('HLEN', key)
  if wrong then anomalies[#anomalies + 1] = 'sessions_type'; return nil end
  if size == 0 then return nil end
  if size > HARD_LIMIT then anomalies[#anomalies + 1] = 'sessions_size'; return nil, true end
  local entries, live = redis.call('HGETALL', key), {}
  for i = 1, #entries, 2 do
    local deadline = deadline_of(entries[i + 1])
    if deadline and deadline > now then
      live[#live + 1] = entries[i]
      live[#live + 1] = entries[i + 1]
    end
  end
  if #live == 0 then return nil end
  return live
end

-- A history's header: generation, base, limit (numbers but the generation); nil when there is none.
local function header_of(key, anomalies)
  local header, wrong = tolerant('LINDEX', key, 0)
  if wrong then anomalies[#anomalies + 1] = 'history_type'; return nil end
  if not header then return nil end
  local generation, base, limit = string.match(header, '^h|(%d+)|(%d+)|(%d+)$')
  if not generation then anomalies[#anomalies + 1] = 'history_header'; return nil end
  return generation, tonumber(base), math.min(tonumber(limit), MOST_MESSAGES)
end

-- Appends a message to the user's history when a session of theirs may recover it; its offset or ''.
-- Senders cannot trim: a history holding twice its limit takes no more, and ends with "!" so that a
-- recovery from before that point fails (the client hears it) rather than missing messages.
local function store(sessions, history, envelope, now, anomalies)
  local recoverable, unreadable = live_sessions(sessions, now, anomalies)
  if unreadable then  -- not stored for sessions that may be live: their recoveries must fail, not miss it
    local last, wrong = tolerant('LINDEX', history, -1)
    if not wrong and last ~= '!' then redis.call('RPUSHX', history, '!') end
    return '', nil
  end
  if not recoverable then return '', nil end
  local generation, base, limit = header_of(history, anomalies)
  if not generation then return '', nil end
  if redis.call('LLEN', history) - 1 >= 2 * limit then
    if redis.call('LINDEX', history, -1) ~= '!' then redis.call('RPUSHX', history, '!') end
    anomalies[#anomalies + 1] = 'history_full'
    return '', nil
  end
  local length = redis.call('RPUSHX', history, envelope)
  return generation .. '-' .. string.format('%d', base + length - 1), recoverable
end

local function appended(inbox, max, element, anomalies)
  local length, wrong = tolerant('LLEN', inbox)
  if wrong then anomalies[#anomalies + 1] = 'inbox_type'; return 0 end
  if length >= max then anomalies[#anomalies + 1] = 'inbox_full'; return 0 end
  redis.call('RPUSH', inbox, element)
  return 1
end

-- The entries (sid, value, ...) but those of ``processes`` (a set).
local function without_processes(entries, processes)
  local kept = {}
  for i = 1, #entries, 2 do
    if not processes[process_of(entries[i + 1])] then
      kept[#kept + 1] = entries[i]
      kept[#kept + 1] = entries[i + 1]
    end
  end
  return kept
end

-- One Redis. KEYS: the user's presence, sessions, history. ARGV: inbox prefix, sender process ('' for an
-- emitter), inbox limit, registry, then the envelope and "1" when volatile (no envelope: only look).
-- Unless volatile, the envelope is stored first; then it goes to the inbox of every live replica
-- holding the user but the sender -- and to the sender's too when stored, so that each replica writes
-- a user's stored messages in the order of their offsets. Returns {entries of live sockets whose
-- replica's inbox took it (not full), offset, live sessions (pid, entry, ...) when it was stored for a
-- user with no such socket, anomalies}.
local function send(keys, args)
  local now, anomalies = now_ms(), {}
  local live, processes = live_presence(keys[1], args[4], now, anomalies)
  local offset, sessions = '', nil
  local envelope = args[5]
  if envelope then
    if args[6] ~= '1' then offset, sessions = store(keys[2], keys[3], envelope, now, anomalies) end
    local element = envelope
    if offset ~= '' then element = '@' .. offset .. ' ' .. envelope end
    local unreached = {}
    for process in pairs(processes) do
      if (offset ~= '' or process ~= args[2])
          and appended(args[1] .. process, tonumber(args[3]), element, anomalies) == 0 then
        unreached[process] = true
      end
    end
    if next(unreached) then live = without_processes(live, unreached) end
  end
  if #live > 0 then sessions = nil end
  return {live, offset, sessions or {}, anomalies}
end

-- Redis Cluster. KEYS: the user's presence, sessions, history. ARGV: the user's shard channel, then the
-- envelope and "1" when volatile (none: only look). As send, but published to the user's channel
-- ("@<offset> <envelope>" when stored) when the user has entries. Returns {replicas listening,
-- entries, offset, live sessions when stored for a user nobody listens for, anomalies}.
local function cluster_send(keys, args)
  local now, anomalies = now_ms(), {}
  local size, wrong = tolerant('HLEN', keys[1])
  local entries = {}
  if wrong then anomalies[#anomalies + 1] = 'presence_type'
  elseif size > HARD_LIMIT then anomalies[#anomalies + 1] = 'presence_size'
  elseif size > 0 then entries = redis.call('HGETALL', keys[1]) end
  local listening, offset, sessions = 0, '', nil
  local envelope = args[2]
  if envelope then
    if args[3] ~= '1' then offset, sessions = store(keys[2], keys[3], envelope, now, anomalies) end
    if #entries > 0 then
      local payload = envelope
      if offset ~= '' then payload = '@' .. offset .. ' ' .. envelope end
      listening = redis.call('SPUBLISH', args[1], payload)
    end
  else
    listening = redis.call('PUBSUB', 'SHARDNUMSUB', args[1])[2]
  end
  if listening > 0 then sessions = nil end
  return {listening, entries, offset, sessions or {}, anomalies}
end

-- ARGV: inbox prefix, sender process, inbox limit, registry, envelope. To the inbox of every live
-- replica but the sender; returns how many.
local function send_to_all(_, args)
  local now, reached, anomalies = now_ms(), 0, {}
  local live = tolerant('ZRANGEBYSCORE', args[4], '(' .. now, '+inf') or {}
  for _, process in ipairs(live) do
    if process ~= args[2] then reached = reached + appended(args[1] .. process, tonumber(args[3]), args[5], anomalies) end
  end
  return reached
end

-- KEYS: registry. ARGV: process, how long (ms) this heartbeat vouches for it, inbox prefix and
-- consumed-counter prefix ('' on a cluster, whose inboxes do not exist). Replicas whose heartbeats
-- stopped are dropped, and their inboxes with them. Returns 1 when the process was not registered.
local function register(keys, args)
  local now, anomalies = now_ms(), {}
  repaired(keys[1], 'ZCARD', anomalies, 'registry_type')
  if args[3] ~= '' then
    for _, process in ipairs(redis.call('ZRANGEBYSCORE', keys[1], '-inf', now)) do
      redis.call('DEL', args[3] .. process, args[4] .. process)
    end
  end
  redis.call('ZREMRANGEBYSCORE', keys[1], '-inf', now)
  local added = redis.call('ZADD', keys[1], now + tonumber(args[2]), args[1])
  redis.call('PEXPIRE', keys[1], tonumber(args[2]) * 6)
  return added
end

-- A replica reading its inbox. KEYS: inbox, its consumed counter. ARGV: how many elements the reader
-- has consumed in all, how many to read, TTL (ms) of the inbox, TTL (ms) of the counter. Drops what the
-- reader consumed since its last call -- once, however often a call is repeated after a lost reply --
-- and returns up to that many of the next elements, which stay until a later call drops them.
local function advance(keys, args)
  local anomalies = {}
  repaired(keys[1], 'LLEN', anomalies, 'inbox_type')
  local consumed = tonumber((tolerant('GET', keys[2])))
  local total = tonumber(args[1])
  if consumed then
    local drop = total - consumed
    if drop > 0 then redis.call('LTRIM', keys[1], drop, -1) end
  end
  -- No counter (or not one of ours, which is written over): a new inbox, or Redis lost both:
  -- nothing in the inbox was read.
  redis.call('SET', keys[2], total, 'PX', tonumber(args[4]))
  redis.call('PEXPIRE', keys[1], tonumber(args[3]))
  return redis.call('LRANGE', keys[1], 0, tonumber(args[2]) - 1)
end

-- KEYS: the user's history. ARGV: its message limit, TTL (ms) it is kept at least. A new session
-- starts after what the history holds now; an absent (or broken) history is created with a new
-- generation. Returns {generation, sequence number of its last element, anomalies}.
local function open_history(keys, args)
  local anomalies = {}
  repaired(keys[1], 'LLEN', anomalies, 'history_type')
  local generation, base, limit = header_of(keys[1], anomalies)
  if not generation and redis.call('EXISTS', keys[1]) == 1 then redis.call('DEL', keys[1]) end
  if not generation then
    local clock = redis.call('TIME')
    generation, base, limit = clock[1] .. string.format('%06d', tonumber(clock[2])), 0, tonumber(args[1])
    redis.call('RPUSH', keys[1], 'h|' .. generation .. '|0|' .. limit)
  elseif tonumber(args[1]) > limit then
    redis.call('LSET', keys[1], 0, 'h|' .. generation .. '|' .. string.format('%d', base) .. '|' .. args[1])
  end
  keep_at_least(keys[1], tonumber(args[2]))
  return {generation, string.format('%d', base + redis.call('LLEN', keys[1]) - 1), anomalies}
end

-- Keeps a user's sessions under their cap: expired ones (deadline before now less the clock skew)
-- go, then the oldest by deadline until fewer than ``room`` remain, those of sockets still in the
-- ``presence`` hash last; never ``keep``. Returns the pids dropped.
local function prune_sessions(key, presence, now, skew, cap, keep)
  local entries = redis.call('HGETALL', key)
  local dropped, kept = {}, {}
  for i = 1, #entries, 2 do
    local deadline = deadline_of(entries[i + 1]) or 0
    if entries[i] ~= keep and deadline < now - skew then
      redis.call('HDEL', key, entries[i])
      dropped[#dropped + 1] = entries[i]
    elseif entries[i] ~= keep then
      kept[#kept + 1] = {entries[i], deadline, entries[i + 1]}
    end
  end
  if cap > 0 and #kept >= cap then
    for _, session in ipairs(kept) do
      local sid = sid_of(session[3])
      session[3] = (sid and redis.call('HEXISTS', presence, sid) == 1) and 1 or 0
    end
    table.sort(kept, function(a, b)
      if a[3] ~= b[3] then return a[3] < b[3] end
      return a[2] < b[2]
    end)
    for i = 1, #kept - cap + 1 do
      redis.call('HDEL', key, kept[i][1])
      dropped[#dropped + 1] = kept[i][1]
    end
  end
  return dropped
end

-- Whether a presence entry may be a live socket's: not when signed longer ago (writer's clock) than a
-- heartbeat vouches for (``stale`` ms, the clock skew included), nor, on one Redis (``registry`` not
-- ''), when its replica is not live. A Redis Cluster keeps the registry in another slot.
local function live_entry(value, registry, now, stale, skew, cache)
  local process, signed = string.match(value, '^(.*)#(%d+)#%x+$')
  if signed and (tonumber(signed) + stale < now or tonumber(signed) > now + skew) then return false end
  if registry == '' then return true end
  return alive(registry, process or value, now, cache)
end

-- Drops the entries of dead replicas from a user's presence.
local function prune_presence(key, registry, now, stale, skew)
  local entries = redis.call('HGETALL', key)
  local cache = {}
  for i = 1, #entries, 2 do
    if not live_entry(entries[i + 1], registry, now, stale, skew, cache) then redis.call('HDEL', key, entries[i]) end
  end
end

-- Trims a history to its limit, keeping its header and numbering: the heartbeats of the user's
-- replicas do it, as senders cannot.
local function trim_history(key, anomalies)
  local generation, base, limit = header_of(key, anomalies)
  if not generation then return end
  local excess = redis.call('LLEN', key) - 1 - limit
  if excess > 0 then
    redis.call('LPOP', key, excess + 1)
    redis.call('LPUSH', key, 'h|' .. generation .. '|' .. string.format('%d', base + excess) .. '|' .. limit)
  end
end

-- A socket joins. KEYS: the user's presence, sessions, history. ARGV: sid, presence value, process,
-- registry ('' on a cluster), most live sockets per user (0: no cap), presence TTL (s), pid ('' without
-- a session), epoch, session entry, "1" for a new session ("0": claimed, its entry already written),
-- most sessions per user, TTL (ms) of the session, clock skew (ms), how long (ms) a signed presence
-- entry may be a live one's, then sids whose entries are forged (removed first). Returns {'ok', pids of sessions dropped for the cap}, {'full', live entries} or
-- {'taken'} when another connection took the claimed session over meanwhile.
local function add_socket(keys, args)
  local now, anomalies = now_ms(), {}
  repaired_hash(keys[1], anomalies, 'presence')
  repaired_hash(keys[2], anomalies, 'sessions')
  for i = 15, #args do redis.call('HDEL', keys[1], args[i]) end
  prune_presence(keys[1], args[4], now, tonumber(args[14]), tonumber(args[13]))
  local cap = tonumber(args[5])
  if cap > 0 then
    local live = {}
    local entries = redis.call('HGETALL', keys[1])
    for i = 1, #entries, 2 do
      if entries[i] ~= args[1] then
        live[#live + 1] = entries[i]
        live[#live + 1] = entries[i + 1]
      end
    end
    if #live / 2 >= cap then return {'full', live, anomalies} end
  end
  local dropped = {}
  if args[7] ~= '' then
    if args[10] == '1' then
      dropped = prune_sessions(keys[2], keys[1], now, tonumber(args[13]), tonumber(args[11]), args[7])
    else
      local entry = redis.call('HGET', keys[2], args[7])
      if not entry or epoch_of(entry) ~= args[8] then return {'taken', {}, anomalies} end
    end
    redis.call('HSET', keys[2], args[7], args[9])
    keep_at_least(keys[2], tonumber(args[12]))
    keep_at_least(keys[3], tonumber(args[12]))
  end
  redis.call('HSET', keys[1], args[1], args[2])
  redis.call('EXPIRE', keys[1], args[6])
  return {'ok', dropped, anomalies}
end

-- A replica's heartbeat, for a chunk of its sockets. KEYS: for each socket, its user's presence,
-- sessions and history. ARGV: presence TTL (s), this process, TTL (ms) of a session, clock skew (ms),
-- then for each socket: sid, presence value, pid ('' without a session), epoch, session entry with its
-- deadline pushed forward, "1" to write the presence entry over another process's. A socket's entry
-- is written unless another process's entry holds its sid now (a recovered connection elsewhere, or a
-- forgery: the caller checks, and writes again with "1"); its session is refreshed while it holds
-- it. Expired sessions go, and histories are trimmed to their limit. Returns {sid, the other entry,
-- the socket's session entry now ('' without one), ...} for the sockets not written, and the anomalies.
local function record(keys, args)
  local now, anomalies, contested = now_ms(), {}, {}
  local session_ttl, skew = tonumber(args[3]), tonumber(args[4])
  for i = 0, #keys / 3 - 1 do
    local presence, sessions, history = keys[3 * i + 1], keys[3 * i + 2], keys[3 * i + 3]
    local base = 4 + 6 * i
    local sid, value, pid, epoch, entry, force =
      args[base + 1], args[base + 2], args[base + 3], args[base + 4], args[base + 5], args[base + 6]
    repaired_hash(presence, anomalies, 'presence')
    repaired_hash(sessions, anomalies, 'sessions')
    repaired(history, 'LLEN', anomalies, 'history_type')
    local current = redis.call('HGET', presence, sid)
    if current and process_of(current) ~= args[2] and force ~= '1' then
      contested[#contested + 1] = sid
      contested[#contested + 1] = current
      contested[#contested + 1] = (pid ~= '' and redis.call('HGET', sessions, pid)) or ''
    else
      redis.call('HSET', presence, sid, value)
      if pid ~= '' then
        local held = redis.call('HGET', sessions, pid)
        if held and epoch_of(held) == epoch then
          redis.call('HSET', sessions, pid, entry)
          keep_at_least(sessions, session_ttl)
          keep_at_least(history, session_ttl)
        end
      end
    end
    redis.call('EXPIRE', presence, args[1])
    if redis.call('HLEN', sessions) > 1 then prune_sessions(sessions, presence, now, skew, 0, '') end
    trim_history(history, anomalies)
  end
  return {contested, anomalies}
end

-- A socket left. KEYS: the user's presence, sessions, history. ARGV: sid, process, pid ('' without a
-- session), epoch, "end" or "keep", the session entry to keep (its deadline the window from now), TTL
-- (ms) of that entry, registry ('' on a cluster), clock skew (ms), how long (ms) a signed presence
-- entry may be a live one's. Its presence entry goes unless another process holds
-- the sid now; its session ends, or is kept for the window, unless another connection took it over.
local function leave(keys, args)
  local now, anomalies = now_ms(), {}
  repaired_hash(keys[1], anomalies, 'presence')
  repaired_hash(keys[2], anomalies, 'sessions')
  local current = redis.call('HGET', keys[1], args[1])
  if current and process_of(current) == args[2] then redis.call('HDEL', keys[1], args[1]) end
  if args[3] ~= '' then
    local held = redis.call('HGET', keys[2], args[3])
    if held and epoch_of(held) == args[4] then
      if args[5] == 'end' then
        redis.call('HDEL', keys[2], args[3])
      else
        redis.call('HSET', keys[2], args[3], args[6])
        keep_at_least(keys[2], tonumber(args[7]))
        keep_at_least(keys[3], tonumber(args[7]))
      end
    end
  end
  prune_presence(keys[1], args[8], now, tonumber(args[10]), tonumber(args[9]))
  prune_sessions(keys[2], keys[1], now, tonumber(args[9]), 0, '')
  return anomalies
end

-- Read only. KEYS: the user's presence, sessions, history. ARGV: pid. What a claim of that session
-- needs to decide: {session entry, the presence entry of its sid, generation, base, limit, history
-- length, sequence number of its last "!" (-1: none)}; false where there is nothing.
local function claim_read(keys, args)
  local anomalies = {}
  local entry = tolerant('HGET', keys[2], args[1])
  if not entry then return {false, false, false, 0, 0, 0, -1} end
  local sid = string.match(entry, '^%d+|[^|]*|([^|]*)|')
  local socket = sid and tolerant('HGET', keys[1], sid) or false
  local generation, base, limit = header_of(keys[3], anomalies)
  if not generation then return {entry, socket, false, 0, 0, 0, -1} end
  local marker = redis.call('LPOS', keys[3], '!', 'RANK', -1)
  return {entry, socket, generation, base, limit, redis.call('LLEN', keys[3]), marker and base + marker or -1}
end

-- KEYS: the user's sessions, history. ARGV: pid, the entry the claim was decided on, the new entry,
-- TTL (ms). Takes the session over if its entry is still the one read; 1 if it did, else 0.
local function claim_take(keys, args)
  if tolerant('HGET', keys[1], args[1]) ~= args[2] then return 0 end
  redis.call('HSET', keys[1], args[1], args[3])
  keep_at_least(keys[1], tonumber(args[4]))
  keep_at_least(keys[2], tonumber(args[4]))
  return 1
end

-- Read only. KEYS: the user's history. ARGV: generation, the sequence number read last, how many.
-- Returns {'ok', sequence number of the first element returned, elements...}, or {'gone'} when the
-- history is of another generation or no longer holds what follows that number.
local function read_history(keys, args)
  local generation, base = header_of(keys[1], {})
  if generation ~= args[1] then return {'gone'} end
  local after = tonumber(args[2])
  if after < base then return {'gone'} end
  local first = after - base + 1
  local reply = {'ok', string.format('%d', after + 1)}
  for _, element in ipairs(redis.call('LRANGE', keys[1], first, first + tonumber(args[3]) - 1)) do
    reply[#reply + 1] = element
  end
  return reply
end

redis.register_function('kindmap_send_@V', send)
redis.register_function('kindmap_cluster_send_@V', cluster_send)
redis.register_function('kindmap_send_to_all_@V', send_to_all)
redis.register_function('kindmap_register_@V', register)
redis.register_function('kindmap_advance_@V', advance)
redis.register_function('kindmap_open_history_@V', open_history)
redis.register_function('kindmap_add_socket_@V', add_socket)
redis.register_function('kindmap_record_@V', record)
redis.register_function('kindmap_leave_@V', leave)
redis.register_function{function_name = 'kindmap_claim_read_@V', callback = claim_read, flags = {'no-writes'}}
redis.register_function('kindmap_claim_take_@V', claim_take)
redis.register_function{function_name = 'kindmap_read_history_@V', callback = read_history, flags = {'no-writes'}}

"""The Lua scripts that make each cluster decision atomic in Redis (EVAL/EVALSHA through txredisapi).

A room's first member anywhere creates it and its last member anywhere
destroys it: the check and the change are one script, so of two nodes
racing, exactly one hears "created" (and runs the hook).  The same holds for
a live stream's name (claim = set if absent; give up = compare and delete)
and for forgetting a node that stopped heartbeating.  Key names come from
``layout.py``; keys a script reaches through a record (a client's room) are
stored in that record, so no script builds a key itself.
"""

#: KEYS client, application clients, room, application rooms, node clients, sequence
#: ARGV info JSON, client id, node, room name, "1" for a default room.  Returns 1 if it made the room.
JOIN = """
local seq = redis.call('INCR', KEYS[6])
redis.call('HSET', KEYS[1], 'info', ARGV[1], 'id', ARGV[2], 'node', ARGV[3], 'name', ARGV[4],
           'default', ARGV[5], 'room', KEYS[3], 'app', KEYS[2], 'rooms', KEYS[4])
redis.call('ZADD', KEYS[2], 'NX', seq, KEYS[1])
local made = redis.call('EXISTS', KEYS[3]) == 0
redis.call('ZADD', KEYS[3], 'NX', seq, KEYS[1])
redis.call('HSET', KEYS[4], ARGV[4], KEYS[3])
redis.call('SADD', KEYS[5], KEYS[1])
if made and ARGV[5] == '0' then return 1 end
return 0
"""

#: A client record's removal, shared by LEAVE and FORGET_NODE: ``f`` is HMGET room, app, rooms, name, id, default.
_REMOVE_CLIENT = """
local function remove_client(key, f)
  redis.call('DEL', key)
  redis.call('ZREM', f[2], key)
  redis.call('ZREM', f[1], key)
  if f[6] == '0' and redis.call('EXISTS', f[1]) == 0 then
    redis.call('HDEL', f[3], f[4])
    return 1
  end
  return 0
end
"""

#: KEYS client, room, node clients; ARGV node.  Returns 1 if the room went with it, 0 if not, -1 if the
#: client was not in that room on this node (then nothing changes).
LEAVE = _REMOVE_CLIENT + """
local f = redis.call('HMGET', KEYS[1], 'room', 'app', 'rooms', 'name', 'id', 'default', 'node')
if f[1] ~= KEYS[2] or f[7] ~= ARGV[1] then return -1 end
redis.call('SREM', KEYS[3], KEYS[1])
return remove_client(KEYS[1], f)
"""

#: KEYS node clients, node streams, nodes, node; ARGV node, "1" to act only if the node's key is gone.
#: Forgets the node's clients (and the rooms they leave empty), streams and registration.  Returns {clients, streams,
#: the info JSON of the last member of each room it emptied...} (the node that ran it, the only one to hear of those
#: rooms, runs their destroy hook), or an empty table when the node is still alive.
FORGET_NODE = _REMOVE_CLIENT + """
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then return {} end
local clients, streams, emptied = 0, 0, {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', key, 'room', 'app', 'rooms', 'name', 'id', 'default', 'node', 'info')
  if f[7] == ARGV[1] then
    if remove_client(key, f) == 1 then table.insert(emptied, f[8]) end
    clients = clients + 1
  end
end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('HGET', key, 'node') == ARGV[1] then
    redis.call('DEL', key)
    streams = streams + 1
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[1])
local answer = {clients, streams}
for _, info in ipairs(emptied) do table.insert(answer, info) end
return answer
"""

#: KEYS node, nodes, node streams; ARGV node, advertise URL, TTL in milliseconds.  Refreshes the node's
#: key and its streams' TTLs.  Returns {1 if the key was there (0: this node was forgotten, or Redis is
#: new), the stream keys the node still holds...}.
HEARTBEAT = """
local known = redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'GET')
redis.call('HSET', KEYS[2], ARGV[1], KEYS[1])
local answer = {0}
if known then answer[1] = 1 end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('HGET', key, 'node') == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[3])
    table.insert(answer, key)
  else
    redis.call('SREM', KEYS[3], key)
  end
end
return answer
"""

#: KEYS nodes.  The names of registered nodes whose key is gone (silent for three heartbeats).
SILENT_NODES = """
local silent = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if redis.call('EXISTS', all[i + 1]) == 0 then table.insert(silent, all[i]) end
end
return silent
"""

#: KEYS stream, node streams; ARGV node, client id, TTL ms.  Returns {} if claimed, else {node, client}.
ANNOUNCE = """
local held = redis.call('HMGET', KEYS[1], 'node', 'client')
if held[1] then return held end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'client', ARGV[2], 'streams', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], KEYS[1])
return {}
"""

#: KEYS stream; ARGV client id.  Returns 1 if that publisher (client ids are unique in the cluster) held
#: it, now given up, on whichever node it was announced.
WITHDRAW = """
local held = redis.call('HMGET', KEYS[1], 'client', 'streams')
if held[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', held[2], KEYS[1])
return 1
"""
#: KEYS a sorted set of client keys (a room's or an application's).  The clients' ``info`` JSON in entry order.
DESCRIBE = """
local infos = {}
for _, key in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local info = redis.call('HGET', key, 'info')
  if info then table.insert(infos, info) end
end
return infos
"""

#: KEYS application rooms.  {name, members, name, members, ...}
ROOMS = """
local rooms = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  table.insert(rooms, all[i])
  table.insert(rooms, redis.call('ZCARD', all[i + 1]))
end
return rooms
"""

# -- remote shared objects (cluster/redis_shared_objects.py) ---------------------------------------
# Every shared object script takes the object's keys in this order: data, meta, sizes, listeners, used (the
# scope's set of objects in use), node objects (this node's set of meta keys).  Slot values travel as the
# base64 of their AMF0 encoding, so that Lua compares them as strings: a slot changes when its encoding does.

#: ARGV persistent ("0"/"1"), max objects, max listeners, name, node, restore version ("" for none), restore
#: seq, listener count, listener ids..., then (key, value, size) triples of the state to restore.
#: A persistent object absent from Redis is answered {"load"} unless a state to restore came with the call
#: (the node read its file); a present object ignores the state to restore.  Returns {"ok", persistent,
#: version, seq, key, value, ...} or {"bad-persistence"}, {"objects"}, {"listeners"}, {"load"}.
SO_USE = """
local meta = redis.call('HMGET', KEYS[2], 'persistent', 'version', 'seq')
if meta[1] and meta[1] ~= ARGV[1] then return {'bad-persistence'} end
local count = tonumber(ARGV[8])
local listening = redis.call('HLEN', KEYS[4])
local new = 0
for i = 9, 8 + count do
  if redis.call('HEXISTS', KEYS[4], ARGV[i]) == 0 then new = new + 1 end
end
if new > 0 then
  if listening == 0 and redis.call('SISMEMBER', KEYS[5], ARGV[4]) == 0
     and redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[2]) then return {'objects'} end
  if listening + new > tonumber(ARGV[3]) then return {'listeners'} end
end
if not meta[1] then
  if ARGV[6] == '' and ARGV[1] == '1' then return {'load'} end
  local size = 0
  for i = 9 + count, #ARGV, 3 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
    size = size + tonumber(ARGV[i + 2])
  end
  local version, seq = 0, 0
  if ARGV[6] ~= '' then version, seq = tonumber(ARGV[6]), tonumber(ARGV[7]) end
  redis.call('HSET', KEYS[2], 'persistent', ARGV[1], 'version', version, 'seq', seq, 'size', size,
             'data', KEYS[1], 'sizes', KEYS[3], 'listeners', KEYS[4], 'used', KEYS[5], 'name', ARGV[4])
  meta = {ARGV[1], version, seq}
end
for i = 9, 8 + count do redis.call('HSET', KEYS[4], ARGV[i], ARGV[5]) end
redis.call('SADD', KEYS[5], ARGV[4])
redis.call('SADD', KEYS[6], KEYS[2])
local answer = {'ok', meta[1], tostring(meta[2]), tostring(meta[3])}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(answer, v) end
return answer
"""

#: ARGV max bytes, origin ("" for none), node, channel, the origin's node ("" when it does not listen on the
#: applying node: then its id is unique in the cluster), then (kind, key, value, size) per operation; kind
#: set | delete | remove | clear | send (key: the handler, value: the arguments).  Applies the batch all or
#: nothing, bumps ``version`` if a slot changed and ``seq`` always, PUBLISHes the applied batch as JSON on the
#: channel and returns it: {"ok", json}; {"absent"} when nobody listens, {"too-big", size} over max bytes.
#: The JSON: {seq, version, persistent, origin, origin_node, node, ops: [[kind, changed 0/1, key, value] or
#: ["clear", changed, [cleared keys]]]}.
SO_APPLY = """
if redis.call('HLEN', KEYS[4]) == 0 then return {'absent'} end
local meta = redis.call('HMGET', KEYS[2], 'version', 'seq', 'size', 'persistent')
local size = tonumber(meta[3]) or 0
local changes, cleared, applied = {}, false, {}
local function current(key)
  local c = changes[key]
  if c then return c[1], c[2] end
  if cleared then return false, 0 end
  local v = redis.call('HGET', KEYS[1], key)
  if not v then return false, 0 end
  return v, tonumber(redis.call('HGET', KEYS[3], key)) or 0
end
local changed = false
for i = 6, #ARGV, 4 do
  local kind, key, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if kind == 'set' then
    local before, before_size = current(key)
    local moved = before ~= value
    if moved then
      size = size + tonumber(ARGV[i + 3]) - before_size
      changes[key] = {value, tonumber(ARGV[i + 3])}
      changed = true
    end
    table.insert(applied, {kind, moved and 1 or 0, key, value})
  elseif kind == 'delete' or kind == 'remove' then
    local before, before_size = current(key)
    if before then
      size = size - before_size
      changes[key] = {false, 0}
      changed = true
    end
    table.insert(applied, {kind, before and 1 or 0, key, ''})
  elseif kind == 'clear' then
    local held = {}
    for k, c in pairs(changes) do if c[1] then table.insert(held, k) end end
    if not cleared then
      for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
        if not changes[k] then table.insert(held, k) end
      end
    end
    changes, cleared, size = {}, true, 0
    if #held > 0 then changed = true end
    table.insert(applied, {kind, #held > 0 and 1 or 0, held})
  else
    table.insert(applied, {'send', 0, key, value})
  end
end
if size > tonumber(ARGV[1]) then return {'too-big', tostring(size)} end
if cleared then redis.call('DEL', KEYS[1], KEYS[3]) end
for k, c in pairs(changes) do
  if c[1] then
    redis.call('HSET', KEYS[1], k, c[1])
    redis.call('HSET', KEYS[3], k, c[2])
  else
    redis.call('HDEL', KEYS[1], k)
    redis.call('HDEL', KEYS[3], k)
  end
end
local version = tonumber(meta[1]) or 0
if changed then version = version + 1 end
local seq = (tonumber(meta[2]) or 0) + 1
redis.call('HSET', KEYS[2], 'version', version, 'seq', seq, 'size', size)
local payload = cjson.encode({seq = seq, version = version, persistent = meta[4], origin = ARGV[2],
                              origin_node = ARGV[5], node = ARGV[3], ops = applied})
redis.call('PUBLISH', ARGV[4], payload)
return {'ok', payload}
"""

#: ARGV listener id, name, "1" if the node keeps other listeners of the object.  Returns 1 if the object has
#: no listener left anywhere (a transient one is deleted), 0 if it has, -1 if that listener was not there.
SO_RELEASE = """
if redis.call('HDEL', KEYS[4], ARGV[1]) == 0 then return -1 end
if ARGV[3] == '0' then redis.call('SREM', KEYS[6], KEYS[2]) end
if redis.call('HLEN', KEYS[4]) > 0 then return 0 end
redis.call('SREM', KEYS[5], ARGV[2])
if redis.call('HGET', KEYS[2], 'persistent') ~= '1' then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return 1
"""

#: KEYS data, meta, listeners.  {persistent, version, seq, key, value, ...}, or {} when nobody listens.
SO_SNAPSHOT = """
if redis.call('HLEN', KEYS[3]) == 0 then return {} end
local meta = redis.call('HMGET', KEYS[2], 'persistent', 'version', 'seq')
local answer = {meta[1], tostring(meta[2]), tostring(meta[3])}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(answer, v) end
return answer
"""

#: KEYS node objects; ARGV node.  Removes the node's listeners from every object it listened to (a transient
#: object left without listeners is deleted) and returns how many it removed.
SO_FORGET_NODE = """
local removed = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', key, 'listeners', 'data', 'sizes', 'used', 'name', 'persistent')
  if f[1] then
    local all = redis.call('HGETALL', f[1])
    for i = 1, #all, 2 do
      if all[i + 1] == ARGV[1] then
        redis.call('HDEL', f[1], all[i])
        removed = removed + 1
      end
    end
    if redis.call('HLEN', f[1]) == 0 then
      redis.call('SREM', f[4], f[5])
      if f[6] ~= '1' then redis.call('DEL', f[2], key, f[3]) end
    end
  end
end
redis.call('DEL', KEYS[1])
return removed
"""

-- The identity graph: resolve a batch of events' identifiers to persons, linking and
-- merging persons, in one atomic call (see sinks/identity_graph.py for the rules).
--
-- KEYS[1] owner   HASH identifier -> person
-- KEYS[2] born    HASH person -> first event time (ms) of any identifier it holds
-- KEYS[3] members HASH person -> JSON array of [identifier, kind]
-- KEYS[4] merges  HASH merge id -> JSON [loser, winner, ts]
-- KEYS[5] seq     STRING the graph's change counter: orders the identities rows
-- KEYS[6..] memos HASH source position -> the JSON answer given for the record there
-- ARGV[1] JSON {kind: the most identifiers of that kind a person may hold}
-- ARGV[2] JSON [[ts as text, [[identifier, kind], ...], memo, field, fingerprint], ...]: per
--         event, its identifiers most trusted first ("<kind>:<key>"), where its answer is
--         remembered (memo: an index into KEYS, 0 for none) and a fingerprint of the record
--         (an answer remembered for another record at that position is not used)
-- ARGV[3] seconds a memo key lives after its last write
-- Returns JSON, per event: the person alone when the event changed nothing, else
--         [person, [[merge id, loser, winner], ...], [[identifier, why], ...],
--         [[identifier, kind, merge id or '', seq], ...] whose owner became the person here:
--         new ones, and every member of a merged person (with the merged person itself as
--         ["person:<id>", "person"], so a later merge carries it along too)]
-- A record whose answer is remembered gets that answer again and changes nothing: a replay
-- after a crash routes each record as the first time, whatever the graph learned since.

local owner, born, members, merges = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local limits = cjson.decode(ARGV[1])
local events = cjson.decode(ARGV[2])

local function members_of(p)
  local raw = redis.call('HGET', members, p)
  if raw then return cjson.decode(raw) end
  return {}
end

-- The kind whose limit one person holding `persons`' identifiers and `fresh` would
-- break (nil: none).
local function over(persons, fresh)
  local seen, count = {}, {}
  local function add(id, kind)
    if seen[id] then return false end
    seen[id] = true
    count[kind] = (count[kind] or 0) + 1
    local most = limits[kind]
    return most ~= nil and count[kind] > most
  end
  for _, p in ipairs(persons) do
    for _, m in ipairs(members_of(p)) do
      if add(m[1], m[2]) then return m[2] end
    end
  end
  for _, f in ipairs(fresh) do
    if add(f[1], f[2]) then return f[2] end
  end
  return nil
end

local function holds(p, kind)  -- whether person `p` holds an identifier of `kind`
  for _, m in ipairs(members_of(p)) do
    if m[2] == kind then return true end
  end
  return false
end

local out = {}
local memo_ttl = tonumber(ARGV[3])
local touched = {}
-- The person a new identifier founds: a profileId is its own person, any other
-- "id:<kind>:<first 20 of its hash>" (the profile id it derives, flows.core.pii).
local function founder(id)
  local key = string.sub(id[1], #id[2] + 2)
  if id[2] == 'profileId' then return key end
  return 'id:' .. id[2] .. ':' .. string.sub(key, 1, 20)
end

local function resolve(ev)
  local ts, ids = ev[1], ev[2]
  local t = tonumber(ts)
  -- The common case: every identifier already belongs to one person. Nothing links; only
  -- an earlier event time makes the person older.
  local one = redis.call('HGET', owner, ids[1][1])
  for i = 2, #ids do
    if not one then break end
    if redis.call('HGET', owner, ids[i][1]) ~= one then one = nil end
  end
  if one then
    if t < tonumber(redis.call('HGET', born, one)) then redis.call('HSET', born, one, ts) end
    return one
  end
  local refused = {}
  local persons, fresh
  while true do
    persons, fresh = {}, {}
    local have = {}
    for _, id in ipairs(ids) do
      local p = redis.call('HGET', owner, id[1])
      if p then
        if not have[p] then
          have[p] = true
          persons[#persons + 1] = p
        end
      else
        fresh[#fresh + 1] = id
      end
    end
    -- A founder id that is a person already (one merged into another: the one it belongs
    -- to now; or a live one, when a CRM sends a derived id back as its profileId): the
    -- event joins that person, within its limits.
    local joined = false
    if #persons == 0 then
      local f = founder(ids[1])
      f = redis.call('HGET', owner, 'person:' .. f) or f
      if redis.call('HEXISTS', born, f) == 1 then
        persons[1] = f
        joined = true
      end
    end
    local kind = nil
    if #ids > 1 or joined then kind = over(persons, fresh) end
    if kind == nil then break end
    -- Over a limit: the least trusted identifier that brings one of that kind (itself,
    -- or the person holding it) does not link and is not added.
    local drop = #ids
    for i = #ids, 1, -1 do
      local id = ids[i]
      local p = redis.call('HGET', owner, id[1])
      if id[2] == kind or (p and holds(p, kind)) then
        drop = i
        break
      end
    end
    local dropped = table.remove(ids, drop)
    refused[#refused + 1] = {dropped[1], 'limit:' .. kind}
    if #ids == 0 then  -- nothing left to link: the event is the joined person's
      return {persons[1], {}, refused, {}}
    end
  end
  local winner, merged, changed = nil, {}, {}
  if #persons == 0 then
    winner = founder(ids[1])
    redis.call('HSET', born, winner, ts)
  else
    -- The oldest person wins (first event time, then id): deterministic in any order.
    local best = nil
    for _, p in ipairs(persons) do
      local b = tonumber(redis.call('HGET', born, p))
      if best == nil or b < best or (b == best and p < winner) then
        best, winner = b, p
      end
    end
    if t < best then redis.call('HSET', born, winner, ts) end
    local list = members_of(winner)
    for _, p in ipairs(persons) do
      if p ~= winner then
        for _, m in ipairs(members_of(p)) do
          redis.call('HSET', owner, m[1], winner)
          list[#list + 1] = m
          changed[#changed + 1] = {m[1], m[2], 'm:' .. p .. '>' .. winner}
        end
        list[#list + 1] = {'person:' .. p, 'person'}
        redis.call('HSET', owner, 'person:' .. p, winner)
        changed[#changed + 1] = {'person:' .. p, 'person', 'm:' .. p .. '>' .. winner}
        redis.call('HDEL', members, p)
        redis.call('HDEL', born, p)
        local id = 'm:' .. p .. '>' .. winner
        redis.call('HSET', merges, id, cjson.encode({p, winner, ts}))
        merged[#merged + 1] = {id, p, winner}
      end
    end
    if #merged > 0 then redis.call('HSET', members, winner, cjson.encode(list)) end
  end
  if #fresh > 0 then
    local list = members_of(winner)
    for _, f in ipairs(fresh) do
      redis.call('HSET', owner, f[1], winner)
      list[#list + 1] = {f[1], f[2]}
      changed[#changed + 1] = {f[1], f[2], ''}
    end
    redis.call('HSET', members, winner, cjson.encode(list))
  end
  if #changed > 0 then
    local seq = redis.call('INCR', KEYS[5])
    for _, c in ipairs(changed) do c[4] = seq end
  end
  if #merged == 0 and #refused == 0 and #changed == 0 then return winner end
  return {winner, merged, refused, changed}
end

for _, ev in ipairs(events) do
  local memo, field, fp = ev[3], ev[4], ev[5]
  local known = nil
  if memo > 0 then
    known = redis.call('HGET', KEYS[memo], field)
    -- "<fingerprint> <answer>": the answer is this record's only if the fingerprint is
    if known and string.sub(known, 1, #fp + 1) ~= fp .. ' ' then known = nil end
  end
  if known then
    -- '=' .. person for an answer that changed nothing, else the answer as JSON
    known = string.sub(known, #fp + 2)
    if string.sub(known, 1, 1) == '=' then known = string.sub(known, 2) else known = cjson.decode(known) end
    out[#out + 1] = known
  else
    local answer = resolve(ev)
    out[#out + 1] = answer
    if memo > 0 then
      if type(answer) == 'table' then answer = cjson.encode(answer) else answer = '=' .. answer end
      redis.call('HSET', KEYS[memo], field, fp .. ' ' .. answer)
      touched[memo] = true
    end
  end
end
if memo_ttl > 0 then
  for memo, _ in pairs(touched) do redis.call('EXPIRE', KEYS[memo], memo_ttl) end
end
return cjson.encode(out)

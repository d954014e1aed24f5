-- A merged person's guard records folded into the person it merged into, the strictest
-- winning (see rules/person_merge.py). Every key is the winner's: one slot.
--
-- KEYS[1] consent  KEYS[2] suppress  KEYS[3] suppress:at  KEYS[4] merged (set of the merge
--         ids folded in)  KEYS[5..] the cap and dedupe keys named by ARGV[1]'s caps and
--         dedupes, in that order
-- ARGV[1] JSON {consent = {field = value}, suppress = {channel = "<ms>|<kind>" or ""},
--               caps = [[[member, score], ...], pttl], ...], dedupes = [[ms, pttl], ...]}
-- ARGV[2] the merge's event time (ms)  ARGV[3] the merge id
-- Returns the number of records that changed (0 for a merge folded in before: a replay).

if redis.call('SADD', KEYS[4], ARGV[3]) == 0 then return 0 end
local data = cjson.decode(ARGV[1])
local t = tonumber(ARGV[2])
local changed = 0

local function ms_of(rec)  -- the event time leading "<ms>|..." (nil for none)
  if not rec then return nil end
  return tonumber(string.match(rec, '^(%d+)|'))
end

-- Suppressions: one on either side holds for the person, dated at the merge at the latest
-- (so only a grant after the merge lifts it); a complaint stays a complaint; one without
-- a time stays without one (never lifted).
for ch, rec in pairs(data.suppress) do
  local mine = redis.call('HGET', KEYS[3], ch)
  local member = redis.call('SISMEMBER', KEYS[2], ch) == 1
  if member and not mine then
    -- already suppressed for good
  elseif rec == '' then
    redis.call('SADD', KEYS[2], ch)
    redis.call('HDEL', KEYS[3], ch)
    changed = changed + 1
  else
    local kind = string.match(rec, '|(%a+)$') or 'unsubscribe'
    if mine and string.match(mine, '|complaint$') then kind = 'complaint' end
    local at = math.max(ms_of(rec) or 0, t)
    if member then at = math.max(at, ms_of(mine) or 0) end
    local want = tostring(at) .. '|' .. kind
    if not member or mine ~= want then
      redis.call('SADD', KEYS[2], ch)
      redis.call('HSET', KEYS[3], ch, want)
      changed = changed + 1
    end
  end
end

-- Consent, as the guards read it (a channel's own record, else "*"): refused where either
-- side refuses, whatever the times; "*" the stricter of the two. A refusal is dated at the
-- merge at the latest (only a later grant lifts it); one without a time stays without one
-- (never overridden). A grant keeps the newest grant's record.
local mine = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do mine[f] = redis.call('HGET', KEYS[1], f) end
local theirs = data.consent

local function effective(side, ch)  -- value, its record ('' for none), whether it is the channel's own
  if side[ch] then return side[ch], side[ch .. ':at'] or '', true end
  if side['*'] then return side['*'], side['*:at'] or '', false end
  return nil, '', false
end

local function decide(ch)  -- value and record of channel `ch` after the merge (nil: no record)
  local a, ra = effective(mine, ch)
  local b, rb = effective(theirs, ch)
  if a == '0' or b == '0' then
    if (a == '0' and ra == '') or (b == '0' and rb == '') then return '0', '' end  -- untimed: for good
    local at, rest = t, '||'
    local function take(r)
      at = math.max(at, ms_of(r) or 0)
      rest = string.match(r, '^%d+(|.*)$') or rest
    end
    if a == '0' then take(ra) end
    if b == '0' then take(rb) end
    return '0', tostring(at) .. rest
  end
  if a == '1' and b == '1' then
    if (ms_of(rb) or 0) > (ms_of(ra) or 0) then return '1', rb end
    return '1', ra
  end
  if a then return a, ra end
  if b then return b, rb end
  return nil, ''
end

local function write(ch, v, rec)
  if mine[ch] == v and (mine[ch .. ':at'] or '') == rec then return end
  if rec == '' then
    redis.call('HSET', KEYS[1], ch, v)
    redis.call('HDEL', KEYS[1], ch .. ':at')
  else
    redis.call('HSET', KEYS[1], ch, v, ch .. ':at', rec)
  end
  changed = changed + 1
end

local star, star_rec = decide('*')
if star then write('*', star, star_rec) end
local channels = {}
for _, side in ipairs({mine, theirs}) do
  for f, _ in pairs(side) do
    if f ~= '*' and not string.match(f, ':at$') then channels[f] = true end
  end
end
for ch, _ in pairs(channels) do
  local v, rec = decide(ch)
  -- a channel needs its own record where it differs from "*" or either side had one
  if v and (v ~= star or mine[ch] or theirs[ch]) then write(ch, v, rec) end
end

-- Caps count the sends of both; a set's TTL only grows.
local k = 5
for _, cap in ipairs(data.caps) do
  for _, ms in ipairs(cap[1]) do
    changed = changed + redis.call('ZADD', KEYS[k], ms[2], ms[1])
  end
  if cap[2] > 0 and redis.call('PTTL', KEYS[k]) < cap[2] then redis.call('PEXPIRE', KEYS[k], cap[2]) end
  k = k + 1
end

-- Dedupe: the later of the two last sends of a template.
for _, d in ipairs(data.dedupes) do  -- only marks with a TTL come (a mark always has one)
  local last = tonumber(redis.call('GET', KEYS[k]) or '0')
  if tonumber(d[1]) > last then
    redis.call('SET', KEYS[k], d[1], 'PX', math.max(d[2], redis.call('PTTL', KEYS[k])))
    changed = changed + 1
  end
  k = k + 1
end
return changed

-- A merged person's guard records folded into the person it merged into, the strictest
-- winning (see rules/person_merge.py). Every key is the winner's: one slot.
--
-- KEYS[1] consent  KEYS[2] suppress  KEYS[3] suppress:at  KEYS[4..] the cap and dedupe keys
--         named by ARGV[1]'s caps and dedupes, in that order
-- ARGV[1] JSON {consent = {field = value}, suppress = {channel = "<ms>|<kind>" or ""},
--               caps = [[[member, score], ...], pttl], ...], dedupes = [[ms, pttl], ...]}
-- ARGV[2] the merge's event time (ms)
-- Returns the number of records that changed.

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

-- Consent: a refusal on either side holds, dated at the merge at the latest; a grant is
-- taken only where the person has no record of that channel, or an older grant.
for ch, v in pairs(data.consent) do
  if not string.match(ch, ':at$') then
    local rec = data.consent[ch .. ':at'] or ''
    local mine = redis.call('HGET', KEYS[1], ch)
    local mine_at = redis.call('HGET', KEYS[1], ch .. ':at')
    if v == '0' then
      local at = math.max(ms_of(rec) or 0, ms_of(mine_at) or 0, t)
      local rest = string.match(rec, '^%d+(|.*)$') or '||'
      local want = tostring(at) .. rest
      if mine ~= '0' or (ms_of(mine_at) or 0) < at then
        redis.call('HSET', KEYS[1], ch, '0', ch .. ':at', want)
        changed = changed + 1
      end
    elseif not mine or (mine == '1' and (ms_of(rec) or 0) > (ms_of(mine_at) or 0)) then
      redis.call('HSET', KEYS[1], ch, v, ch .. ':at', rec)
      changed = changed + 1
    end
  end
end

-- Caps count the sends of both; a set's TTL only grows.
local k = 4
for _, cap in ipairs(data.caps) do
  for _, ms in ipairs(cap[1]) do
    changed = changed + redis.call('ZADD', KEYS[k], ms[2], ms[1])
  end
  if cap[2] > 0 and redis.call('PTTL', KEYS[k]) < cap[2] then redis.call('PEXPIRE', KEYS[k], cap[2]) end
  k = k + 1
end

-- Dedupe: the later of the two last sends of a template.
for _, d in ipairs(data.dedupes) do
  local mine = tonumber(redis.call('GET', KEYS[k]) or '0')
  if tonumber(d[1]) > mine then
    if d[2] > 0 then
      redis.call('SET', KEYS[k], d[1], 'PX', d[2])
    else
      redis.call('SET', KEYS[k], d[1])
    end
    changed = changed + 1
  end
  k = k + 1
end
return changed

-- A consent or suppression record of one profile, applied in event time (rules/guards.py
-- `record_consent` documents the rules). Every key carries the profile's {hash tag}.
--
-- KEYS[1] = scrm:consent:{pid}      (hash: <ch> -> "1" granted / "0" refused; <ch>:at ->
--                                     "<event time ms>|<version>|<event id>" of that record)
-- KEYS[2] = scrm:suppress:{pid}     (set: channels suppressed, "*" = do-not-contact)
-- KEYS[3] = scrm:suppress:{pid}:at  (hash: channel -> "<event time ms>|<unsubscribe|complaint>"
--                                     of its newest suppression)
-- ARGV = op ("grant" | "revoke" | "suppress"), channel ("*" = every channel),
--        event time ms, version, event id, kind of a suppression ("unsubscribe" | "complaint")
-- Returns "applied", or "stale" when a newer record of that scope already decided.

local consent, suppress, suppress_at = KEYS[1], KEYS[2], KEYS[3]
local op, ch, ts, version, event = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local INF = math.huge

-- The order of consent records: event time, then a refusal after a grant, then event id.
-- (nil: no record.) A record without a readable time (written before records had one) is
-- never overridden when it refuses and always when it grants.
local function key_of(field)
  local value = redis.call('HGET', consent, field)
  if not value then return nil end
  local rank = value == '0' and 1 or 0
  local rec = redis.call('HGET', consent, field .. ':at')
  local t, ev = nil, ''
  if rec then
    t = tonumber(string.match(rec, '^(%-?%d+)'))
    ev = string.match(rec, '|[^|]*|(.*)$') or ''
  end
  if t == nil then t = rank == 1 and INF or -INF end
  return {t, rank, ev}
end

local function before(a, b)  -- a < b in record order
  if a[1] ~= b[1] then return a[1] < b[1] end
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[3] < b[3]
end

-- A suppression's time and whether a complaint made it (a missing or unreadable time: +inf,
-- never lifted).
local function suppressed_at(s)
  local rec = redis.call('HGET', suppress_at, s)
  if not rec then return INF, false end
  local t = tonumber(string.match(rec, '^(%-?%d+)'))
  return t or INF, string.find(rec, '|complaint', 1, true) ~= nil
end

if op == 'suppress' then
  local kind = ARGV[6] == 'complaint' and 'complaint' or 'unsubscribe'
  -- An unsubscribe older than a re-subscribe of its channel or of every channel (which
  -- arrived first) is stale; a tie goes to the unsubscribe. A complaint is never stale.
  if kind ~= 'complaint' then
    for _, scope in ipairs({ch, '*'}) do
      local k = key_of(scope)
      if k and k[2] == 0 and k[1] > ts then return 'stale' end
    end
  end
  local existed = redis.call('SADD', suppress, ch) == 0
  local prev, complained = suppressed_at(ch)
  if existed and prev == INF then return 'applied' end  -- held since before times were kept
  if not existed then prev = -INF end
  if complained then kind = 'complaint' end
  redis.call('HSET', suppress_at, ch, tostring(math.max(prev, ts)) .. '|' .. kind)
  return 'applied'
end

local new = {ts, op == 'revoke' and 1 or 0, event}
-- The newest record of the channel and of every channel decides: an older one changes nothing.
for _, scope in ipairs(ch == '*' and {'*'} or {ch, '*'}) do
  local k = key_of(scope)
  if k then
    if before(new, k) then return 'stale' end
    if not before(k, new) and scope == ch then return 'applied' end  -- the same record again
  end
end
redis.call('HSET', consent, ch, op == 'grant' and '1' or '0', ch .. ':at', ARGV[3] .. '|' .. version .. '|' .. event)
if ch == '*' then
  -- Every channel's own older record gives way to this one.
  local fields = redis.call('HKEYS', consent)
  for _, f in ipairs(fields) do
    if f ~= '*' and not string.find(f, ':at$') then
      local k = key_of(f)
      if k and before(k, new) then redis.call('HDEL', consent, f, f .. ':at') end
    end
  end
end
if op == 'grant' then
  -- A re-subscribe lifts the unsubscribes it is newer than: of its channel, or all. A tie
  -- keeps the suppression; a complaint is never lifted from the stream.
  local lifted = {ch}
  if ch == '*' then lifted = redis.call('SMEMBERS', suppress) end
  for _, s in ipairs(lifted) do
    local when, complained = suppressed_at(s)
    if when < ts and not complained then
      redis.call('SREM', suppress, s)
      redis.call('HDEL', suppress_at, s)
    end
  end
end
return 'applied'

-- A consent or suppression record of one profile, applied in event time (rules/guards.py
-- `record_consent` documents the rules). Every key carries the profile's {hash tag}.
--
-- KEYS[1] = scrm:consent:{pid}      (hash: <ch> -> "1" granted / "0" refused; <ch>:at ->
--                                     "<event time ms>|<version>|<event id>" of that record)
-- KEYS[2] = scrm:suppress:{pid}     (set: channels suppressed, "*" = do-not-contact)
-- KEYS[3] = scrm:suppress:{pid}:at  (hash: channel -> event time ms of its suppression)
-- ARGV = op ("grant" | "revoke" | "suppress"), channel ("*" = every channel),
--        event time ms, version, event id
-- Returns "applied", or "stale" when a newer record of that scope already decided.

local consent, suppress, suppress_at = KEYS[1], KEYS[2], KEYS[3]
local op, ch, ts, version, event = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]

local function at(field)  -- event time of the consent record of `field` (-1: none)
  local rec = redis.call('HGET', consent, field .. ':at')
  if not rec then return -1 end
  return tonumber(string.match(rec, '^(%-?%d+)'))
end

if op == 'suppress' then
  -- A re-subscribe newer than the unsubscribe (it arrived late) stands.
  for _, scope in ipairs({ch, '*'}) do
    if redis.call('HGET', consent, scope) == '1' and at(scope) > ts then return 'stale' end
  end
  redis.call('SADD', suppress, ch)
  local prev = tonumber(redis.call('HGET', suppress_at, ch) or '-1')
  if ts > prev then redis.call('HSET', suppress_at, ch, ARGV[3]) end
  return 'applied'
end

if at(ch) > ts then return 'stale' end
redis.call('HSET', consent, ch, op == 'grant' and '1' or '0', ch .. ':at', ARGV[3] .. '|' .. version .. '|' .. event)
if ch == '*' then
  -- Every channel's own older record gives way to this one.
  local fields = redis.call('HKEYS', consent)
  for _, f in ipairs(fields) do
    if f ~= '*' and f ~= '*:at' and not string.find(f, ':at$') and at(f) < ts then
      redis.call('HDEL', consent, f, f .. ':at')
    end
  end
end
if op == 'grant' then
  -- A re-subscribe lifts the suppressions it is newer than: of its channel, or all.
  local lifted = {ch}
  if ch == '*' then lifted = redis.call('SMEMBERS', suppress) end
  for _, s in ipairs(lifted) do
    local when = tonumber(redis.call('HGET', suppress_at, s) or '-1')
    if when < ts then
      redis.call('SREM', suppress, s)
      redis.call('HDEL', suppress_at, s)
    end
  end
end
return 'applied'

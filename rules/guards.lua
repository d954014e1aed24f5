-- The guards of one profile's batch of journey actions, decided and recorded atomically.
--
-- Called by rules/guards.py (which documents the guarantees; rules/policy.py documents the
-- key layout and the decisions). Every key the script touches is declared in KEYS and
-- carries the profile's {hash tag}, so one call runs on one Redis Cluster shard.
--
-- KEYS[1] = scrm:consent:{pid}   (hash: channel or "*" -> "0" refused / "1" granted; a
--                                  channel without a record of its own follows "*")
-- KEYS[2] = scrm:suppress:{pid}  (set: "*" do-not-contact, or channel names)
-- KEYS[3..] = decision, dedupe and cap keys, referred to by index from ARGV[1]
-- ARGV[1] = JSON array, one object per action, in decision order:
--   id   action id                          d    index of the decision key
--   ttl  decision TTL (ms, string)
--   ch   channel                            pr   priority (0..100)
--   now  event time (ms, string)            h    1 = holdout arm
--   dk   index of the dedupe key, 0 = off   dw   dedupe window (ms, string)
--   dl   dedupe label for the reason ("welcome:1d")
--   caps array of {k = key index, n = count, cut = counted scores are > cut,
--                  trim = scores <= trim are dropped, keep = TTL floor (ms),
--                  r = reserve, rp = reserve priority, l = reason label}
-- Returns a flat array: status, reason, replay for each action, in order. replay is 0 for a
-- new decision, 1 for one decided before, 2 for a 'sent' decided by an earlier call whose
-- message the actions topic has not acknowledged yet (its record still ends in '|pending';
-- rules/guards.py mark_delivered drops the suffix), which the caller delivers again.

local actions = cjson.decode(ARGV[1])
local consent_key = KEYS[1]
local suppress_key = KEYS[2]
local out = {}
local decided_here = {}  -- action ids decided by this call: a repeat is not delivered twice

local function check(a)
  local c = redis.call('HGET', consent_key, a.ch)
  if c == '0' then
    return 'no_consent', 'consent:' .. a.ch
  end
  if not c and redis.call('HGET', consent_key, '*') == '0' then
    return 'no_consent', 'consent:*'
  end
  if redis.call('SISMEMBER', suppress_key, '*') == 1 then
    return 'suppressed', 'dnc'
  end
  if redis.call('SISMEMBER', suppress_key, a.ch) == 1 then
    return 'suppressed', 'suppressed:' .. a.ch
  end
  if a.dk > 0 then
    local last = redis.call('GET', KEYS[a.dk])
    if last and tonumber(a.now) - tonumber(last) < tonumber(a.dw) then
      return 'deduped', 'dedupe:' .. a.dl
    end
  end
  for _, c in ipairs(a.caps) do
    local key = KEYS[c.k]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', c.trim)
    local used = redis.call('ZCOUNT', key, '(' .. c.cut, '+inf')
    if used >= c.n then
      return 'capped', 'cap:' .. c.l
    end
    if c.r > 0 and used >= c.n - c.r and a.pr < c.rp then
      return 'capped', 'cap:' .. c.l .. ':reserved'
    end
  end
  if a.h == 1 then
    return 'holdout', 'holdout'
  end
  return 'sent', 'ok'
end

local function record_send(a, action_id)
  for _, c in ipairs(a.caps) do
    local key = KEYS[c.k]
    redis.call('ZADD', key, a.now, action_id)
    if redis.call('PTTL', key) < tonumber(c.keep) then
      redis.call('PEXPIRE', key, c.keep)
    end
  end
  if a.dk > 0 then
    redis.call('SET', KEYS[a.dk], a.now, 'PX', a.dw)
  end
end

for _, a in ipairs(actions) do
  local decision_key = KEYS[a.d]
  local status, reason, replay
  local stored = redis.call('GET', decision_key)
  if stored then
    -- (1) decided before: return the recorded decision, change nothing
    local pending = false
    if string.sub(stored, -8) == '|pending' then
      stored = string.sub(stored, 1, -9)
      pending = true
    end
    local sep = string.find(stored, '|', 1, true)
    if sep then
      status = string.sub(stored, 1, sep - 1)
      reason = string.sub(stored, sep + 1)
    else
      status, reason = stored, ''
    end
    if pending and not decided_here[a.id] then
      replay = 2
    else
      replay = 1
    end
  else
    status, reason = check(a)
    local record = status .. '|' .. reason
    if status == 'sent' then
      record_send(a, a.id)
      record = record .. '|pending'
    end
    redis.call('SET', decision_key, record, 'PX', a.ttl)
    replay = 0
  end
  decided_here[a.id] = true
  out[#out + 1] = status
  out[#out + 1] = reason
  out[#out + 1] = replay
end
return out

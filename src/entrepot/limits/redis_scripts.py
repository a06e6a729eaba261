"""The Lua scripts that keep rate windows and budgets in Redis. Each runs atomically on the
server, so one request's admission (every window and every budget of its key and team) is one
round trip that no other replica can interleave with, and the clock is the server's (`TIME`), the
same for every replica.

Layout, under a common prefix:
- `w:<name>`: a rate window, a hash of its index (`i`), current (`c`) and previous (`p`) counts,
  gone two window lengths after its last use.
- `b:<name>`: a budget, a hash of `spent`, `reserved`, `seeded` (when it was seeded, µs) and one
  field `h:<request id>` per reservation, holding its amount; it lives as long as its period
  (plus a grace day), as the limiter asks when seeding it.
- `x:<name>`: when each reservation of budget `<name>` lapses (a sorted set, scored in µs).

A reservation nobody settled in time (its replica died) lapses at the next admission on its
budget: its amount goes back, and its field becomes `e`, so that a late settlement still spends
what the request cost. Settling removes the reservation, so settling again finds nothing and
spends nothing. A spend counted elsewhere (on a replica's own counters while Redis was
unreachable) is added once, marked `s`, and only if the budget was seeded before the request was
admitted: a budget seeded later has it from the ledger. If Redis did reserve for it after all (the
admission timed out, and Redis ran it once it could), that reservation is settled instead.
Markers go after `MARKER_SECONDS`.

Integers reach `HINCRBY` as the strings they arrived as: Lua numbers are doubles, and Redis would
write a large one in exponent notation, which `HINCRBY` refuses.
"""

from __future__ import annotations

# How long the mark of a lapsed reservation (or of a spend added after an outage) is kept.
MARKER_SECONDS = 86_400

_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = t[1] .. string.format('%06d', tonumber(t[2]))

local function roll(key, length)
  local v = redis.call('HMGET', key, 'i', 'c', 'p')
  local index = math.floor(now / length)
  local i, c, p = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if i ~= index then
    if i ~= nil and index == i + 1 then p = c else p = 0 end
    c = 0
  end
  return index, c, p, i ~= index
end

-- Small integers (a window index, a count) are written in full by Redis, without exponent.
-- A window is written on every request but expires once, at the end of the window after its
-- current one: its expiry is set when it rolls.
local function store(key, length, index, c, p, rolled)
  redis.call('HSET', key, 'i', index, 'c', c, 'p', p)
  if rolled then redis.call('PEXPIREAT', key, math.floor((index + 2) * length / 1000)) end
end

local function same_life(key, holds)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then redis.call('PEXPIRE', holds, ttl) end
end
"""

# KEYS: the windows, then each budget's hash and its reservations' lapse times.
# ARGV: request id, hold (µs), windows, budgets, marker life (µs); per window: amount, limit,
# length (µs); per budget: amount (-1: only check that it has room), limit.
# Answers {outcome, now (µs), refused window, refused budget, spent, reserved, window states,
# unseeded budgets}; outcome 0 = a window refused, 1 = budgets to seed, 2 = a budget refused,
# 3 = admitted; a window state is {used, index, current, previous}.
ADMIT = (
    _COMMON
    + """
local rid, hold, nw, nb, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5])

local function lapse(key, holds)
  local due = redis.call('ZRANGEBYSCORE', holds, '-inf', now, 'LIMIT', 0, 128)
  for _, id in ipairs(due) do
    local field = 'h:' .. id
    local held = redis.call('HGET', key, field)
    if held and held ~= 'e' and held ~= 's' then
      if held ~= '0' then redis.call('HINCRBY', key, 'reserved', '-' .. held) end
      redis.call('HSET', key, field, 'e')
      redis.call('ZADD', holds, now + keep, id)
    else
      redis.call('HDEL', key, field)
      redis.call('ZREM', holds, id)
    end
  end
end

local states, lengths, rolled = {}, {}, {}
local arg = 6
for w = 1, nw do
  local amount, limit, length = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1]),
    tonumber(ARGV[arg + 2])
  arg = arg + 3
  local index, c, p, new = roll(KEYS[w], length)
  local used = c + math.floor((p * ((index + 1) * length - now) + length - 1) / length)
  if used + amount > limit then
    states[w] = {used, index, c, p}
    return {0, now, w, 0, 0, 0, states, {}}
  end
  states[w] = {used + amount, index, c + amount, p}
  lengths[w], rolled[w] = length, new
end

local unseeded = {}
for b = 1, nb do
  if redis.call('EXISTS', KEYS[nw + 2 * b - 1]) == 0 then unseeded[#unseeded + 1] = b end
end
if #unseeded > 0 then return {1, now, 0, 0, 0, 0, states, unseeded} end

local first = arg
for b = 1, nb do
  local key, holds = KEYS[nw + 2 * b - 1], KEYS[nw + 2 * b]
  lapse(key, holds)
  local amount, limit = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
  arg = arg + 2
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  local spent, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  local committed = spent + reserved
  if (amount < 0 and committed >= limit) or (amount >= 0 and committed + amount > limit) then
    return {2, now, 0, b, v[1] or '0', v[2] or '0', states, {}}
  end
end

for w = 1, nw do
  local s = states[w]
  store(KEYS[w], lengths[w], s[2], s[3], s[4], rolled[w])
end
arg = first
for b = 1, nb do
  local key, holds = KEYS[nw + 2 * b - 1], KEYS[nw + 2 * b]
  local amount = ARGV[arg]
  arg = arg + 2
  if tonumber(amount) >= 0 then
    if amount ~= '0' then redis.call('HINCRBY', key, 'reserved', amount) end
    redis.call('HSET', key, 'h:' .. rid, amount)
    redis.call('ZADD', holds, now + hold, rid)
    same_life(key, holds)
  end
end
return {3, now, 0, 0, 0, 0, states, {}}
"""
)

# KEYS: the token windows to correct, then each budget's hash and its reservations' lapse times.
# ARGV: request id, token windows, budgets, token correction, window length (µs), marker life
# (µs); per budget: actual cost, 1 if reserved here (else a spend counted elsewhere), admitted
# at (µs).
SETTLE = (
    _COMMON
    + """
local rid, nt, nb = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local correction, length, keep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local field = 'h:' .. rid

for w = 1, nt do
  local index, c, p, new = roll(KEYS[w], length)
  if correction >= 0 then
    c = c + correction
  else
    local taken = math.min(c, -correction)
    c = c - taken
    p = math.max(0, p + correction + taken)
  end
  store(KEYS[w], length, index, c, p, new)
end

local arg = 7
for b = 1, nb do
  local key, holds = KEYS[nt + 2 * b - 1], KEYS[nt + 2 * b]
  local actual, reserved_here, admitted = ARGV[arg], ARGV[arg + 1], tonumber(ARGV[arg + 2])
  arg = arg + 3
  if redis.call('EXISTS', key) == 1 then
    local held = redis.call('HGET', key, field)
    if held and held ~= 's' then
      -- Reserved here, even when the replica took the admission for failed (it timed out, and
      -- Redis ran it later): the reservation goes and the cost is spent.
      if held ~= 'e' and held ~= '0' then
        redis.call('HINCRBY', key, 'reserved', '-' .. held)
      end
      if actual ~= '0' then redis.call('HINCRBY', key, 'spent', actual) end
      redis.call('HDEL', key, field)
      redis.call('ZREM', holds, rid)
    elseif not held and reserved_here == '0' then
      local seeded = tonumber(redis.call('HGET', key, 'seeded')) or 0
      if admitted >= seeded then
        if actual ~= '0' then redis.call('HINCRBY', key, 'spent', actual) end
        redis.call('HSET', key, field, 's')
        redis.call('ZADD', holds, now + keep, rid)
        same_life(key, holds)
      end
    end
  end
end
return 1
"""
)

# KEYS: a budget's hash and its reservations' lapse times. ARGV: spent, time to live (ms; 0:
# none). Answers 1 if it seeded the budget, 0 if the budget existed (and was left alone).
SEED = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'reserved', '0', 'seeded', stamp)
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
)

# KEYS: a budget's hash. ARGV: spent. Sets what was spent (never the reservations) and counts
# the budget as seeded now; answers the spend it replaced, or nil if there is no such budget.
SET_SPENT = (
    _COMMON
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local before = redis.call('HGET', KEYS[1], 'spent')
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'seeded', stamp)
return before
"""
)

-- wrk script for the consume and balance benchmarks: a fresh request each time.
--
--   wrk -t2 -c16 -d6s --latency -s bench/wrk.lua URL -- ENDPOINT KEY FEATURE ACTION SHAPE IDEM CUSTOMERS
--
-- ENDPOINT is consume or balance; SHAPE is hot (one customer) or many (a random c1..CUSTOMERS
-- per request); IDEM is idem (a fresh random Idempotency-Key per request) or plain. A consume's
-- action_id is unique (a random tag per thread and a counter), so the ledger shows any request
-- done twice. Each thread counts what it sent and every answer by status; done() prints one line
-- `WRK_RESULT {json}` with the requests, the latency percentiles (microseconds) and the counts.

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

local function seed()
   -- Threads must not share a sequence: equal Idempotency-Keys would be replays.
   local value = id or 0
   local urandom = io.open("/dev/urandom", "rb")
   if urandom then
      local bytes = urandom:read(6)
      urandom:close()
      for i = 1, #bytes do
         value = value * 256 + bytes:byte(i)
      end
   else
      value = value * 1000003 + os.time()
   end
   math.randomseed(value)
end

function init(args)
   endpoint = args[1]
   key = args[2]
   feature = args[3]
   action_type = args[4]
   hot = args[5] == "hot"
   idem = args[6] == "idem"
   customers = tonumber(args[7]) or 1000
   sent = 0
   answered = 0
   statuses = {}
   seed()
   tag = string.format("%04x%04x", math.random(0, 65535), math.random(0, 65535))
end

local function customer()
   if hot then
      return "hot"
   end
   return "c" .. math.random(1, customers)
end

local function idempotency_key()
   local parts = {}
   for i = 1, 8 do
      parts[i] = string.format("%04x", math.random(0, 65535))
   end
   return "wrk-" .. table.concat(parts)
end

function request()
   sent = sent + 1
   local headers = { ["X-API-Key"] = key }
   if endpoint == "consume" then
      headers["Content-Type"] = "application/json"
      if idem then
         headers["Idempotency-Key"] = idempotency_key()
      end
      local body = string.format(
         '{"external_id":"%s","feature":"%s","action_type":"%s","action_id":"%s-%d"}',
         customer(), feature, action_type, tag, sent
      )
      return wrk.format("POST", "/api/v1/billing/quota/consume", headers, body)
   end
   local path = "/api/v1/billing/balance?external_id=" .. customer() .. "&feature=" .. feature
   return wrk.format("GET", path, headers)
end

function response(status, headers, body)
   answered = answered + 1
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local total_sent, total_answered, counts = 0, 0, {}
   for _, thread in ipairs(threads) do
      total_sent = total_sent + (thread:get("sent") or 0)
      total_answered = total_answered + (thread:get("answered") or 0)
      for status, n in pairs(thread:get("statuses") or {}) do
         counts[status] = (counts[status] or 0) + n
      end
   end
   local parts = {}
   for status, n in pairs(counts) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   local errors = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,'
         .. '"max_us":%d,"sent":%d,"answered":%d,"statuses":{%s},'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
      latency:percentile(99), latency.max, total_sent, total_answered, table.concat(parts, ","),
      errors.connect, errors.read, errors.write, errors.status, errors.timeout
   ))
end

-- One wrk script for every scenario (bench/client.py runs it).
--
-- wrk runs with one connection per thread (-t C -c C), so in each thread's
-- Lua state request() and response() strictly alternate: that lets a thread
-- time each request itself, read an ETag and send the PUT that depends on it,
-- and count statuses per kind of request. The scenario comes from the Lua
-- file named by BENCH_WRK_CONFIG (written by bench/client.py), which returns
--
--   { mode = "get" | "update" | "post", paths = {...}, headers = {...},
--     -- post: path, templates = {...}, genders = {...}, first = n, stride = C, run = "...",
--     --       content_type = "application/fhir+json" | "application/json" }
--
-- done() writes a JSON summary to BENCH_WRK_OUT: every measured latency (µs),
-- the count per status of the measured requests (and of the reads that an
-- update does first), and wrk's own socket errors.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")
local function now_us()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local cfg = dofile(os.getenv("BENCH_WRK_CONFIG"))

local threads = {}
local thread_count = 0

function setup(thread)
    thread:set("thread_id", thread_count)
    thread_count = thread_count + 1
    table.insert(threads, thread)
end

-- per-thread state
latencies = {}   -- µs of each measured request
statuses = {}    -- status -> count, measured requests
aux_statuses = {} -- status -> count, the GET before each update
local started = 0
local pending_put = nil   -- { path, etag, body } once the GET answered
local in_flight = nil     -- "get" | "put" | "post" | "measured"
local sent = 0

local function header(headers, name)
    return headers[name] or headers[string.lower(name)]
end

local function merged_headers(extra)
    local h = {}
    for k, v in pairs(cfg.headers or {}) do h[k] = v end
    for k, v in pairs(extra or {}) do h[k] = v end
    return h
end

-- personnummer of patient n for a template of the given gender (mirrors
-- bench/dataset.py: template_person): birth day n % DAYS after 1925-01-01,
-- serial 2 * ((n // DAYS) % 500) + (1 for men), Luhn check digit.
local DAYS = 29585
local function civil_from_days(z)   -- days since 1970-01-01 -> y, m, d (Howard Hinnant)
    z = z + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
        - math.floor(doe / 146096)) / 365)
    local y = yoe + era * 400
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local d = doy - math.floor((153 * mp + 2) / 5) + 1
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    return y, m, d
end
local DAY_1925 = -16436   -- 1925-01-01 in days since 1970-01-01

local function luhn(digits)
    local total = 0
    for i = 1, #digits do
        local p = tonumber(digits:sub(i, i)) * ((i % 2 == 1) and 2 or 1)
        total = total + (p > 9 and p - 9 or p)
    end
    return (10 - total % 10) % 10
end

local function person(n, gender)
    local y, m, d = civil_from_days(DAY_1925 + n % DAYS)
    local serial = (math.floor(n / DAYS) % 500) * 2 + (gender == "male" and 1 or 0)
    local nine = string.format("%02d%02d%02d%03d", y % 100, m, d, serial)
    local pnr = string.format("%04d%02d%02d%03d%d", y, m, d, serial, luhn(nine))
    return pnr, string.format("%04d-%02d-%02d", y, m, d)
end

function init(args)
    math.randomseed(thread_id * 7919 + os.time())
    for _ = 1, 10 do math.random() end
end

local function random_path()
    return cfg.paths[math.random(#cfg.paths)]
end

function request()
    started = now_us()
    if cfg.mode == "get" then
        in_flight = "measured"
        return wrk.format("GET", random_path(), merged_headers())
    elseif cfg.mode == "update" then
        if pending_put then
            local put = pending_put
            pending_put = nil
            in_flight = "put"
            return wrk.format("PUT", put.path, merged_headers({
                ["Content-Type"] = "application/fhir+json",
                ["If-Match"] = put.etag,
            }), put.body)
        end
        in_flight = "get"
        current_path = random_path()
        return wrk.format("GET", current_path, merged_headers())
    else -- post
        local n = cfg.first + thread_id + cfg.stride * sent
        sent = sent + 1
        local k = (n % #cfg.templates) + 1
        local pnr, birth = person(n, cfg.genders[k])
        local body = cfg.templates[k]:gsub("@PNR@", pnr):gsub("@BIRTH@", birth)
            :gsub("@TOKEN@", cfg.run .. "-" .. n)
        in_flight = "measured"
        return wrk.format("POST", cfg.path, merged_headers({
            ["Content-Type"] = cfg.content_type or "application/fhir+json",
        }), body)
    end
end

revision = 0
function response(status, headers, body)
    local elapsed = now_us() - started
    if in_flight == "get" then
        aux_statuses[status] = (aux_statuses[status] or 0) + 1
        if status == 200 then
            revision = revision + 1
            local changed = body:gsub('"title":"[^"]*"',
                '"title":"Dokumenterad överenskommelse (rev ' .. thread_id .. "." .. revision .. ')"', 1)
            pending_put = { path = current_path, etag = header(headers, "ETag"), body = changed }
        end
        return
    end
    statuses[status] = (statuses[status] or 0) + 1
    latencies[#latencies + 1] = elapsed
end

function done(summary, latency, requests)
    local out = io.open(os.getenv("BENCH_WRK_OUT"), "w")
    local function counts(t)
        local parts = {}
        for k, v in pairs(t) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
        return "{" .. table.concat(parts, ",") .. "}"
    end
    local all_status, all_aux, lat_parts = {}, {}, {}
    for _, thread in ipairs(threads) do
        for k, v in pairs(thread:get("statuses")) do all_status[k] = (all_status[k] or 0) + v end
        for k, v in pairs(thread:get("aux_statuses")) do all_aux[k] = (all_aux[k] or 0) + v end
        for _, v in ipairs(thread:get("latencies")) do
            lat_parts[#lat_parts + 1] = string.format("%d", v)
        end
    end
    local e = summary.errors
    out:write(string.format(
        '{"duration_us":%d,"requests":%d,"bytes":%d,' ..
        '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
        '"statuses":%s,"aux_statuses":%s,"latencies_us":[%s]}',
        summary.duration, summary.requests, summary.bytes,
        e.connect, e.read, e.write, e.timeout,
        counts(all_status), counts(all_aux), table.concat(lat_parts, ",")))
    out:close()
end

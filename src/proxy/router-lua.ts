// The proxy's router, in Lua (nginx's Lua module on LuaJIT), shipped in every generation as
// `router.lua`. Routes and addresses are data: the route table (route-table.ts renders it) says
// which upstream and rate-limit class each path of an environment gets and which containers each
// upstream sends to, and every worker re-reads it while it runs, so neither a route change nor a
// deploy's switch reloads nginx: no worker is replaced, no client connection is closed.
//
// - nginx's master loads the code and the live table when it loads the configuration (start,
//   reload); a table that does not parse fails that load, and a failed reload keeps the old
//   configuration serving.
// - Each worker then checks the live table's first line every 50 ms and adopts a new table when
//   it parses and was rendered for the configuration the worker runs (its `config` hash). A table
//   that does not parse is logged once and ignored: the worker keeps routing by the one it has.
// - The generation server answers berth's two questions: which table every worker runs
//   (`answerToken`), and whether a staged generation's table parses and fits (`answerCheck`).
//
// Matching mirrors nginx's own locations for the same routes: the first regex (in table order)
// that matches the normalized URI wins, else the longest prefix; no match is a 404. Requests go
// to one nginx upstream whose balancer (M.balance) picks the address: replicas in turn, the next
// one when a connection fails; its keepalive pool keeps connections per address.
//
// It also makes the request ids of requests that come without one (M.request_id): 32 hex digits,
// 24 drawn from /dev/urandom by each worker as it starts and 8 from that worker's count of ids,
// mixed by a keyed one-to-one function: unique, and no client learns how busy the proxy is.
// nginx's own $request_id draws 16 bytes from OpenSSL for every request: measured with
// callgrind, about 4,000 more instructions per proxied request than this, and a system call
// (OpenSSL's fork check) that a paravirtualized host makes dear.

export const ROUTER_LUA = String.raw`-- berth's router: rendered by berth; do not edit.
local M = {}

local WATCH_SECONDS = 0.05
local MAGIC = "berth-routes"
local VERSION = "2"
local ESCAPES = { t = "\t", n = "\n", r = "\r", ["\\"] = "\\" }
local NAME = "^[a-z0-9][a-z0-9_-]*$"

local re_find, sub, gsub, match, gmatch = ngx.re.find, string.sub, string.gsub, string.match, string.gmatch
local byte, format = string.byte, string.format
local bit = require("bit")
local band, bxor, rshift, tobit, tohex = bit.band, bit.bxor, bit.rshift, bit.tobit, bit.tohex
local balancer = require("ngx.balancer")
local NOWHERE = { { "127.0.0.1", 9 } } -- refuses: what an upstream without address sends to

local paths = {}      -- live: the table behind current; generations: directory of the generations; file: its name there
local routes = {}     -- routes[app][env] = { regexes = {...} in table order, prefixes = {...} longest first,
                      --   exact = { [prefix] = true }, slashless = { ["/docs"] = true } for a prefix "/docs/" }
local upstreams = {}  -- upstreams[name] = { { host, port }, ... }: empty when no container is healthy
local turns = {}      -- turns[name]: the replica this worker sent the last request of that upstream to
local token = ""      -- token of the table in use
local config = ""     -- hash of the configuration nginx loaded with its first table
local seen = nil      -- first line of the last table read: read again only once it changes
local id_prefix = nil -- this worker's random part of the request ids (24 hex digits)
local id_count = 0    -- requests this worker gave an id since it drew id_prefix
local id_keys = { 0, 0 } -- this worker's secret keys of the count's mix (32 bits each)

local function unescape(field)
  return (gsub(field, "\\(.)", ESCAPES))
end

local function longest_first(a, b)
  return #a.path > #b.path
end

-- A route line into parsed[app][env]; nil, or why it is wrong.
local function parse_route(parsed, line)
  local app, env, kind, path, upstream, limit = match(line, "^route\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)$")
  if app == nil then
    return "expected a route: app, env, kind, path, upstream and limit separated by tabs"
  end
  if not (match(app, NAME) and match(env, NAME) and match(upstream, NAME) and match(limit, NAME)) then
    return "app, env, upstream and limit must be names"
  end
  path = unescape(path)
  local route = { path = path, upstream = upstream, limit = limit }
  local envs = parsed[app] or {}
  parsed[app] = envs
  local environment = envs[env] or { regexes = {}, prefixes = {}, exact = {}, slashless = {} }
  envs[env] = environment
  if kind == "regex" then
    local _, _, err = re_find("", path, "jo")
    if err then
      return err
    end
    environment.regexes[#environment.regexes + 1] = route
  elseif kind == "prefix" and sub(path, 1, 1) == "/" then
    environment.prefixes[#environment.prefixes + 1] = route
    environment.exact[path] = true
    if #path > 1 and sub(path, -1) == "/" then
      environment.slashless[sub(path, 1, -2)] = true
    end
  else
    return "expected a regex, or a prefix starting with /"
  end
end

-- An upstream line into addresses[name]; nil, or why it is wrong.
local function parse_upstream(addresses, line)
  local name, list = match(line, "^upstream\t([^\t]+)\t([^\t]+)$")
  if name == nil or not match(name, NAME) then
    return "expected an upstream: a name and its addresses separated by a tab"
  end
  local peers = {}
  if list ~= "-" then
    for address in gmatch(list, "[^ ]+") do
      local host, port = match(address, "^(%d+%.%d+%.%d+%.%d+):(%d+)$")
      if host == nil then
        -- ngx.balancer takes an IPv6 address in its brackets.
        host, port = match(address, "^(%[[%x:.]+%]):(%d+)$")
      end
      port = tonumber(port)
      if host == nil or port < 1 or port > 65535 then
        return "upstream " .. name .. ": " .. address .. " is not ip:port"
      end
      peers[#peers + 1] = { host, port }
    end
  end
  addresses[name] = peers
end

-- The routes of a table, or nil and why not.
local function parse(header, body)
  local magic, version, table_token, table_config = match(header or "", "^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)$")
  if magic ~= MAGIC or version ~= VERSION then
    return nil, "line 1: expected a berth route table, version " .. VERSION
  end
  if body ~= "" and sub(body, -1) ~= "\n" then
    return nil, "the last line is cut short"
  end
  local parsed, addresses, number = {}, {}, 1
  for line in body:gmatch("([^\n]*)\n") do
    number = number + 1
    local kind = match(line, "^([a-z]+)\t")
    local err
    if kind == "route" then
      err = parse_route(parsed, line)
    elseif kind == "upstream" then
      err = parse_upstream(addresses, line)
    else
      err = "expected a route or an upstream"
    end
    if err then
      return nil, "line " .. number .. ": " .. err
    end
  end
  for _, envs in pairs(parsed) do
    for _, environment in pairs(envs) do
      for _, list in ipairs({ environment.regexes, environment.prefixes }) do
        for _, route in ipairs(list) do
          if addresses[route.upstream] == nil then
            return nil, "route to " .. route.upstream .. ", which has no upstream line"
          end
        end
      end
      table.sort(environment.prefixes, longest_first)
    end
  end
  return { routes = parsed, upstreams = addresses, token = table_token, config = table_config }
end

-- The first line of the table at path and the file, open after it; or nil, nil and why not.
local function open(path)
  local file, err = io.open(path, "rb")
  if file == nil then
    return nil, nil, err
  end
  return file:read("*l"), file
end

local function read(path)
  local header, file, err = open(path)
  if header == nil then
    if file then file:close() end
    return nil, "cannot read " .. path .. ": " .. (err or "the file is empty")
  end
  local body = file:read("*a")
  file:close()
  return parse(header, body or "")
end

local function register()
  ngx.shared.berth_router:set(ngx.worker.id(), token)
end

-- In nginx's master, as it loads the configuration: the live table, or the load fails.
function M.start(options)
  paths = options
  local parsed, err = read(paths.live)
  if parsed == nil then
    error("berth route table " .. paths.live .. ": " .. err, 0)
  end
  routes, upstreams, token, config = parsed.routes, parsed.upstreams, parsed.token, parsed.config
end

-- Adopts the live table if it changed, parses, and belongs to this worker's configuration.
local function refresh()
  local header, file = open(paths.live)
  if header == nil or header == seen then
    if file then file:close() end
    return
  end
  local body = file:read("*a")
  file:close()
  seen = header
  local parsed, err = parse(header, body or "")
  if parsed == nil then
    ngx.log(ngx.ERR, "berth route table ", paths.live, " rejected; routing by the previous one: ", err)
  elseif parsed.config ~= config then
    -- Rendered for another configuration: the reload that brings it follows.
    return
  else
    routes, upstreams, token = parsed.routes, parsed.upstreams, parsed.token
    register()
  end
end

local function hex(bytes)
  return (gsub(bytes, ".", function(char) return format("%02x", byte(char)) end))
end

-- A 32-bit number from 4 bytes.
local function word32(bytes, at)
  local b1, b2, b3, b4 = byte(bytes, at, at + 3)
  return tobit(b1 * 0x1000000 + b2 * 0x10000 + b3 * 0x100 + b4)
end

-- A new random part for this worker's request ids, new keys for the mix of its count (secret:
-- drawn apart from the part the ids show), and the count from zero.
local function draw_id_parts()
  local file = io.open("/dev/urandom", "rb")
  local bytes = file and file:read(20)
  if file then file:close() end
  if bytes == nil or #bytes ~= 20 then
    -- Never expected in a container; still unique enough to trace by: pid, time, and Lua's generator.
    ngx.log(ngx.ERR, "berth request ids: cannot read /dev/urandom; using the pid, the time and math.random")
    math.randomseed(ngx.worker.pid() * 1000003 + ngx.now() * 1000)
    id_prefix = format("%08x%08x%08x", ngx.worker.pid(), math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
    id_keys = { tobit(math.random(0, 0x7fffffff)), tobit(math.random(0, 0x7fffffff)) }
  else
    id_prefix = hex(sub(bytes, 1, 12))
    id_keys = { word32(bytes, 13), word32(bytes, 17) }
  end
  id_count = 0
end

-- x * m modulo 2^32 for 32-bit x and m; m is split in 16-bit halves so that every product is
-- exact in a double.
local function mul32(x, m)
  return tobit(x * band(m, 0xffff) + tobit(x * rshift(m, 16)) * 65536)
end

-- A one-to-one function of 32-bit values (xor with a key, then xorshift-multiply rounds of a
-- well-mixing 32-bit hash, then xor with a second key): distinct counts give distinct results,
-- and consecutive counts look unrelated.
local function mix(count)
  local x = bxor(tobit(count), id_keys[1])
  x = bxor(x, rshift(x, 16))
  x = mul32(x, 0x7feb352d)
  x = bxor(x, rshift(x, 15))
  x = mul32(x, 0x846ca68b)
  x = bxor(x, rshift(x, 16))
  return bxor(x, id_keys[2])
end

-- set_by_lua: an id for a request that came without one. Each worker draws its own random part
-- as it starts (workers never share one, a reload's new workers draw new ones) and a new one
-- after 2^32 - 1 ids.
function M.request_id()
  if id_prefix == nil or id_count >= 0xffffffff then
    draw_id_parts()
  end
  id_count = id_count + 1
  return id_prefix .. tohex(mix(id_count))
end

-- In each worker as it starts: its table counts, the live one is watched, and it draws the
-- random part of its request ids (the master loaded this module: a part drawn there would be
-- every worker's).
function M.watch()
  draw_id_parts()
  register()
  refresh()
  local ok, err = ngx.timer.every(WATCH_SECONDS, function(premature)
    if not premature then refresh() end
  end)
  if not ok then
    ngx.log(ngx.ERR, "berth route table: cannot watch ", paths.live, ": ", err)
  end
end

-- set_by_lua: the upstream of the request to app's env ("" when no route matches, "-" when no
-- container of it is healthy), and its limit class in $berth_route_limit.
function M.route(app, env)
  local envs = routes[app]
  local environment = envs and envs[env]
  if environment == nil then
    return ""
  end
  local uri = ngx.var.uri
  -- nginx answers "/docs" with a redirect to "/docs/" when "/docs/" is a prefix route (ahead of
  -- any regex): no route here, and no_route redirects.
  if environment.slashless[uri] and not environment.exact[uri] then
    return ""
  end
  local chosen = nil
  local regexes = environment.regexes
  for i = 1, #regexes do
    if re_find(uri, regexes[i].path, "jo") then
      chosen = regexes[i]
      break
    end
  end
  if chosen == nil then
    local prefixes = environment.prefixes
    for i = 1, #prefixes do
      local prefix = prefixes[i].path
      -- "/" matches every URI (no substring made for it).
      if prefix == "/" or sub(uri, 1, #prefix) == prefix then
        chosen = prefixes[i]
        break
      end
    end
  end
  if chosen == nil then
    return ""
  end
  ngx.var.berth_route_limit = chosen.limit
  local peers = upstreams[chosen.upstream]
  if peers == nil or #peers == 0 then
    return "-"
  end
  return chosen.upstream
end

-- content_by_lua, for a request route() found no route for: nginx's 301 from "/docs" to "/docs/"
-- when "/docs/" is a prefix route (to the port clients use, with the query), else a 404.
function M.no_route(app, env)
  local envs = routes[app]
  local environment = envs and envs[env]
  local uri = ngx.var.uri
  if environment == nil or not environment.slashless[uri] or environment.exact[uri] then
    return ngx.exit(ngx.HTTP_NOT_FOUND)
  end
  local scheme, port = ngx.var.scheme, ngx.var.berth_forwarded_port
  local default_port = (scheme == "https" and "443") or "80"
  local authority = ngx.var.host .. ((port == default_port or port == "") and "" or (":" .. port))
  return ngx.redirect(scheme .. "://" .. authority .. uri .. "/" .. ngx.var.is_args .. (ngx.var.args or ""), ngx.HTTP_MOVED_PERMANENTLY)
end

-- balancer_by_lua: the address for this try of the request to $berth_upstream. The first try
-- takes the replica after the one this worker used last; a failed try (nginx retries on error
-- and timeout, and once more when a kept-alive connection turns out closed) takes the next.
function M.balance()
  local name = ngx.var.berth_upstream
  local peers = upstreams[name]
  local count = peers and #peers or 0
  if count == 0 then
    -- The table changed between routing and connecting, and no container of it is healthy any
    -- more: a port nothing listens on refuses at once, and nginx answers with the unavailable
    -- page, as it does when route() finds no address.
    ngx.log(ngx.WARN, "berth router: upstream ", name, " lost its addresses while a request was routed to it")
    peers, count = NOWHERE, 1
  end
  local index
  if balancer.get_last_failure() == nil then
    index = (turns[name] or 0) % count + 1
    turns[name] = index
    if count > 1 then
      balancer.set_more_tries(count - 1)
      ngx.ctx.berth_peer = index
    end
  else
    index = (ngx.ctx.berth_peer or 0) % count + 1
    ngx.ctx.berth_peer = index
  end
  local peer = peers[index]
  local ok, err = balancer.set_current_peer(peer[1], peer[2])
  if not ok then
    ngx.log(ngx.ERR, "berth router: cannot send to ", peer[1], ":", peer[2], ": ", err)
    return ngx.exit(ngx.ERROR)
  end
end

-- The token of the table every worker runs, or "pending" while they differ.
function M.answer_token()
  local workers = ngx.shared.berth_router
  for id = 0, ngx.worker.count() - 1 do
    if workers:get(id) ~= token then
      ngx.print("pending")
      return
    end
  end
  ngx.print(token)
end

-- ?generation=N: "fits" (workers would adopt its table), "other-configuration" (it parses, for
-- another configuration), or 422 and why it does not parse.
function M.answer_check()
  local generation = ngx.var.arg_generation
  if generation == nil or not match(generation, "^%d+$") then
    ngx.status = 400
    ngx.print("expected ?generation=N")
    return
  end
  local parsed, err = read(paths.generations .. "/" .. generation .. "/" .. paths.file)
  if parsed == nil then
    ngx.status = 422
    ngx.print(err)
  elseif parsed.config == config then
    ngx.print("fits")
  else
    ngx.print("other-configuration")
  end
end

return M
`;

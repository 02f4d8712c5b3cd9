-- POST an array of records per request. The body file is a JSON array whose object ids are
-- written @i@; each request fills them with BASE (one per wrk run) + its own range, so that
-- no two records of a run are of the same object (as in the create scenario).
--   wrk ... -s bulk.lua URL -- KEY PATH BODY_FILE BASE
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local template, first

function init(args)
  use_token(args[1])
  json_body()
  wrk.method = "POST"
  wrk.path = args[2]
  template = read_file(args[3])
  first = tonumber(args[4]) + thread_index * 100000000
end

function request()
  local base = first
  first = first + 100000
  local body = string.gsub(template, "@(%d+)@", function(i)
    return string.format("%d", base + tonumber(i))
  end)
  return wrk.format(nil, nil, nil, body)
end

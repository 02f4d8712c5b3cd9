-- POST one record per request. The body file is a JSON object with one %d, filled with the
-- object_id: BASE (one per wrk run) + a counter, so that no two records are of the same object.
--   wrk ... -s create.lua URL -- KEY PATH BODY_FILE BASE
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local template, counter

function init(args)
  use_token(args[1])
  json_body()
  wrk.method = "POST"
  wrk.path = args[2]
  template = read_file(args[3])
  counter = tonumber(args[4]) + thread_index * 100000000
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(template, counter))
end

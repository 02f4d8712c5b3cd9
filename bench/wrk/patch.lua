-- PATCH one field (retry_count) of records by id, going round a list of ids.
--   wrk ... -s patch.lua URL -- KEY PATH_PREFIX IDS_FILE     (requests PATH_PREFIX<id>/)
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local prefix, ids, position

function init(args)
  use_token(args[1])
  json_body()
  prefix = args[2]
  ids = read_lines(args[3])
  position = (thread_index * 7919) % #ids
end

function request()
  position = position % #ids + 1
  local body = string.format('{"retry_count": %d}', position % 6)
  return wrk.format("PATCH", prefix .. ids[position] .. "/", nil, body)
end

-- GET records by id, going round a list of ids (one per line), each thread from its own place.
--   wrk ... -s get_ids.lua URL -- KEY PATH_PREFIX IDS_FILE     (requests PATH_PREFIX<id>/)
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

local prefix, ids, position

function init(args)
  use_token(args[1])
  prefix = args[2]
  ids = read_lines(args[3])
  position = (thread_index * 7919) % #ids
end

function request()
  position = position % #ids + 1
  return wrk.format("GET", prefix .. ids[position] .. "/")
end

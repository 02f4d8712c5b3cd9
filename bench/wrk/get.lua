-- GET one fixed path (a list page).   wrk ... -s get.lua URL -- KEY PATH
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib.lua")

function init(args)
  use_token(args[1])
  wrk.path = args[2]
end

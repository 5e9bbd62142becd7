-- wrk script of the gateway peer benchmark: every request is a POST of one JSON body.
-- The body comes from the BENCH_BODY environment variable; the headers (content-type,
-- authorization) come from wrk -H, so they are not set here (twice is a 400 for aiohttp).
-- Where the body holds the mark @@@@@@, each request puts six letters of its own there (a
-- counter in base 26, as peers/loadgen.py's tag() does): no two prompts alike.
wrk.method = "POST"
local body = os.getenv("BENCH_BODY")
local mark = "@@@@@@"
if body:find(mark, 1, true) then
  local sent = 0
  local function tag(number)
    local letters = {}
    for i = 6, 1, -1 do
      letters[i] = string.char(97 + number % 26)
      number = math.floor(number / 26)
    end
    return table.concat(letters)
  end
  local head, tail = body:match("^(.-)@@@@@@(.*)$")
  request = function()
    sent = sent + 1
    return wrk.format(nil, nil, nil, head .. tag(sent) .. tail)
  end
else
  wrk.body = body
end
